"""Building blocks of the DiffAE networks: ResBlock, AttentionBlock and the timestep-aware Sequential.

Sub-module registration order defines the state-dict order, which must equal the original's,
so attributes are created in exactly that order.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from Engineering.errors import ConfigError
from Engineering.science.nn_utils import Downsample, Upsample, conv_nd, normalization, zero_module


class TimestepBlock(nn.Module):
    """A module whose forward takes the time embedding, the semantic condition and a lateral skip."""

    def forward(
        self,
        x: torch.Tensor,
        emb: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
        lateral: torch.Tensor | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError


class TimestepEmbedSequential(nn.Sequential):
    """Sequential that passes (emb, cond, lateral) to :class:`TimestepBlock` children and only x to the others."""

    def forward(
        self,
        x: torch.Tensor,
        emb: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
        lateral: torch.Tensor | None = None,
    ) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, TimestepBlock):
                x = layer(x, emb=emb, cond=cond, lateral=lateral)
            else:
                x = layer(x)
        return x


class ResBlock(TimestepBlock):
    """Residual block, optionally conditioned on time (scale+shift) and z_sem (scale).

    Input (B, C_in [+ C_lateral], *S) -> output (B, C_out, *S'), where S' = S, or S resampled by 2 when
    ``up``/``down`` (depth kept in 3D when ``keep_depth``).
    """

    def __init__(
        self,
        channels: int,
        *,
        dims: int,
        out_channels: int | None = None,
        emb_channels: int | None = None,
        cond_channels: int | None = None,
        dropout: float = 0.0,
        use_condition: bool = True,
        up: bool = False,
        down: bool = False,
        has_lateral: bool = False,
        lateral_channels: int = 0,
        group_limit: int = 32,
        use_zero_module: bool = True,
        keep_depth: bool = True,
    ) -> None:
        super().__init__()
        out_channels = out_channels or channels
        if channels < 1 or out_channels < 1:
            raise ConfigError(f"ResBlock channels must be >= 1, got {channels!r} -> {out_channels!r}")
        if up and down:
            raise ConfigError("ResBlock cannot be both up and down")
        if use_condition and (emb_channels is None or cond_channels is None):
            raise ConfigError(
                f"conditioned ResBlock needs emb_channels and cond_channels, got {emb_channels!r}, {cond_channels!r}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")
        in_ch = channels + (lateral_channels if has_lateral else 0)
        self.use_condition = use_condition
        self.has_lateral = has_lateral
        self.grad_checkpoint = False  # set by the network builder (model§DiffAE§grad_checkpoint)
        self.updown = up or down

        self.in_layers = nn.Sequential(
            normalization(in_ch, group_limit), nn.SiLU(), conv_nd(dims, in_ch, out_channels, 3, padding=1)
        )
        self.h_upd: nn.Module
        self.x_upd: nn.Module
        if up:
            self.h_upd, self.x_upd = Upsample(dims, keep_depth), Upsample(dims, keep_depth)
        elif down:
            self.h_upd, self.x_upd = Downsample(dims, keep_depth), Downsample(dims, keep_depth)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        if use_condition:
            assert emb_channels is not None and cond_channels is not None  # checked above (ConfigError)
            self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels))
            self.cond_emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(cond_channels, out_channels))
            out_conv = conv_nd(dims, out_channels, out_channels, 3, padding=1)
            self.out_layers = nn.Sequential(
                normalization(out_channels, group_limit),
                nn.SiLU(),
                nn.Dropout(p=dropout),
                zero_module(out_conv) if use_zero_module else out_conv,
            )
        self.skip_connection = nn.Identity() if in_ch == out_channels else conv_nd(dims, in_ch, out_channels, 1)

    def forward(
        self,
        x: torch.Tensor,
        emb: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
        lateral: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (B, C_in, *S), emb (B, E), cond (B, E_c), lateral (B, C_lat, *S) -> (B, C_out, *S')."""
        if self.grad_checkpoint and self.training and torch.is_grad_enabled():
            # recompute the activations in backward instead of storing them; dropout replays its RNG state
            return cast(torch.Tensor, checkpoint(self._forward, x, emb, cond, lateral, use_reentrant=False))
        return self._forward(x, emb, cond, lateral)

    def _forward(
        self,
        x: torch.Tensor,
        emb: torch.Tensor | None,
        cond: torch.Tensor | None,
        lateral: torch.Tensor | None,
    ) -> torch.Tensor:
        if self.has_lateral:
            x = torch.cat([x, cast(torch.Tensor, lateral)], dim=1)  # (B, C_in + C_lat, *S)
        if self.updown:
            h = self.in_layers[:-1](x)
            h = self.in_layers[-1](self.h_upd(h))
            x = self.x_upd(x)
        else:
            h = self.in_layers(x)
        if self.use_condition:
            h = self._modulate(h, cast(torch.Tensor, emb), cond)
        return self.skip_connection(x) + h

    def _modulate(self, h: torch.Tensor, emb: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """GN -> time scale/shift -> z_sem scale -> SiLU -> Dropout -> conv."""
        extra = (1,) * (h.ndim - 2)
        scale, shift = self.emb_layers(emb).type(h.dtype).view(*emb.shape[:1], -1, *extra).chunk(2, dim=1)
        h = self.out_layers[0](h)
        h = h * (1 + scale) + shift
        if cond is not None:
            c = self.cond_emb_layers(cond).type(h.dtype).view(*cond.shape[:1], -1, *extra)  # (B, C_out, 1, ...)
            h = h * (1 + c)
        return self.out_layers[1:](h)


#: ``model§DiffAE§attention`` values: fused ``scaled_dot_product_attention``, or the original einsum formula
ATTENTION_MODES = ("sdpa", "math")


class AttentionBlock(nn.Module):
    """Single-head self-attention over all spatial positions (legacy qkv order).

    (B, C, *S) -> (B, C, *S); the T = prod(S) positions are the tokens. ``mode`` "sdpa" computes the same function
    with :func:`torch.nn.functional.scaled_dot_product_attention` (CPU flash kernel; flash or memory-efficient
    kernels on GPU), which never holds the (T, T) score matrix; "math" is the original's formula, bit for bit.
    Both read the same ``qkv``/``proj_out`` 1x1-conv weights, so the state dict is the same.
    """

    def __init__(
        self, channels: int, *, group_limit: int = 32, use_zero_module: bool = True, mode: str = "sdpa"
    ) -> None:
        super().__init__()
        if channels < 1:
            raise ConfigError(f"AttentionBlock channels must be >= 1, got {channels!r}")
        if mode not in ATTENTION_MODES:
            raise ConfigError(f"model.DiffAE.attention must be one of {', '.join(ATTENTION_MODES)}, got {mode!r}")
        self.channels = channels
        self.mode = mode
        self.grad_checkpoint = False  # set by the network builder (model§DiffAE§grad_checkpoint)
        self.norm = normalization(channels, group_limit)
        self.qkv = conv_nd(1, channels, 3 * channels, 1)
        proj = conv_nd(1, channels, channels, 1)
        self.proj_out = zero_module(proj) if use_zero_module else proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpoint and self.training and torch.is_grad_enabled():
            return cast(torch.Tensor, checkpoint(self._forward, x, use_reentrant=False))
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)  # (B, C, T)
        a = self._sdpa(x) if self.mode == "sdpa" else self._math(x)
        return (x + a).reshape(b, c, *spatial)

    def _math(self, x: torch.Tensor) -> torch.Tensor:
        """The original's formula: (B, C, T) -> projected attention output (B, C, T)."""
        c = x.shape[1]
        qkv = self.qkv(self.norm(x))  # (B, 3C, T)
        q, k, v = qkv.split(c, dim=1)  # each (B, C, T)
        scale = 1 / math.sqrt(math.sqrt(c))
        weight = torch.einsum("bct,bcs->bts", q * scale, k * scale)  # (B, T, T)
        weight = torch.softmax(weight.float(), dim=-1).type(weight.dtype)
        a = torch.einsum("bts,bcs->bct", weight, v)  # (B, C, T)
        return self.proj_out(a)

    def _sdpa(self, x: torch.Tensor) -> torch.Tensor:
        """Token-major: (B, C, T) -> (B, C, T) through :meth:`sdpa_inputs` and the fused kernel."""
        q, k, v = self.sdpa_inputs(x)
        a = F.scaled_dot_product_attention(q, k, v).squeeze(1)  # (B, T, C); default scale 1/sqrt(C) as the math
        out = _pointwise(self.proj_out, a)  # (B, T, C)
        return out.transpose(1, 2)  # (B, C, T)

    def sdpa_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v (B, 1, T, C) for SDPA from x (B, C, T).

        The 1x1 conv is applied as a linear map on the token-major view, so the result (B, T, 3C) is produced
        directly in the layout the fused GPU kernels need: last dimension contiguous (stride 1), one head, no
        mask, the input's (autocast) dtype. Any of these failing would make SDPA fall back to the math kernel.
        """
        h = self.norm(x).transpose(1, 2)  # (B, T, C) view
        qkv = _pointwise(self.qkv, h)  # (B, T, 3C), contiguous
        q, k, v = qkv.unsqueeze(1).chunk(3, dim=-1)  # legacy order: q, k, v consecutive along the channels
        return q, k, v


def _pointwise(conv: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """A kernel-1 Conv1d applied to token-major h (B, T, C_in) as the linear map it is -> (B, T, C_out)."""
    weight = cast(torch.Tensor, conv.weight)
    bias = cast(torch.Tensor | None, conv.bias)
    return F.linear(h, weight.squeeze(-1), bias)
