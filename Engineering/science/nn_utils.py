"""The one layer factory of the 2D and 3D networks (DiffAE and the pythae drive's nets), guided-diffusion style.

Every spatial layer is made here from the number of spatial dims, so network code never names
``Conv2d``/``Conv3d`` directly and 2D versus 3D is decided in one place. Resampling takes an explicit
``keep_depth`` switch: the original 3D networks resample only H and W and keep the depth axis (docs/differences.md D8).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from Engineering.errors import ConfigError

_CONVS: dict[int, type[nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_TRANSPOSES: dict[int, type[nn.Module]] = {
    1: nn.ConvTranspose1d,
    2: nn.ConvTranspose2d,
    3: nn.ConvTranspose3d,
}
_BATCH_NORMS: dict[int, type[nn.Module]] = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_AVG_POOLS: dict[int, type[nn.Module]] = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
_ADAPTIVE_AVG_POOLS: dict[int, type[nn.Module]] = {
    1: nn.AdaptiveAvgPool1d,
    2: nn.AdaptiveAvgPool2d,
    3: nn.AdaptiveAvgPool3d,
}


def check_dims(dims: int) -> int:
    """Return ``dims`` if it is 1, 2 or 3; raise :class:`ConfigError` naming the bad value otherwise."""
    if dims not in _CONVS:
        raise ConfigError(f"dims must be 1, 2 or 3, got {dims!r}")
    return dims


def conv_nd(dims: int, *args, **kwargs) -> nn.Module:
    """A 1D/2D/3D convolution (``nn.ConvNd(*args, **kwargs)``)."""
    return _CONVS[check_dims(dims)](*args, **kwargs)


def conv_transpose_nd(dims: int, *args, **kwargs) -> nn.Module:
    """A 1D/2D/3D transposed convolution (``nn.ConvTransposeNd(*args, **kwargs)``)."""
    return _CONV_TRANSPOSES[check_dims(dims)](*args, **kwargs)


def batch_norm_nd(dims: int, *args, **kwargs) -> nn.Module:
    """A 1D/2D/3D batch norm (``nn.BatchNormNd(*args, **kwargs)``)."""
    return _BATCH_NORMS[check_dims(dims)](*args, **kwargs)


def avg_pool_nd(dims: int, *args, **kwargs) -> nn.Module:
    """A 1D/2D/3D average pool (``nn.AvgPoolNd(*args, **kwargs)``)."""
    return _AVG_POOLS[check_dims(dims)](*args, **kwargs)


def adaptive_avg_pool_nd(dims: int, output_size: int) -> nn.Module:
    """A 1D/2D/3D adaptive average pool."""
    return _ADAPTIVE_AVG_POOLS[check_dims(dims)](output_size)


def zero_module(module: nn.Module) -> nn.Module:
    """Zero every parameter of ``module`` in place and return it."""
    for p in module.parameters():
        p.detach().zero_()
    return module


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 and cast back to the input dtype (stable under fp16 autocast)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


def normalization(channels: int, group_limit: int = 32) -> nn.Module:
    """GroupNorm (eps 1e-5, affine) with ``min(group_limit, channels)`` groups."""
    if channels < 1 or group_limit < 1:
        raise ConfigError(f"normalization needs channels >= 1 and group_limit >= 1, got {channels!r}, {group_limit!r}")
    return GroupNorm32(min(group_limit, channels), channels)


def resample_factor(dims: int, keep_depth: bool) -> int | tuple[int, ...]:
    """Factor-2 resampling per spatial axis; in 3D with ``keep_depth`` the first (depth) axis keeps factor 1."""
    if dims == 3 and keep_depth:
        return (1, 2, 2)
    return 2


class Downsample(nn.Module):
    """Parameter-free factor-2 average-pool downsampling: (B, C, [D,] H, W) -> (B, C, [D or D/2,] H/2, W/2)."""

    def __init__(self, dims: int, keep_depth: bool = True) -> None:
        super().__init__()
        factor = resample_factor(check_dims(dims), keep_depth)
        self.op = avg_pool_nd(dims, kernel_size=factor, stride=factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Parameter-free nearest-neighbour factor-2 upsampling, the inverse layout of :class:`Downsample`."""

    def __init__(self, dims: int, keep_depth: bool = True) -> None:
        super().__init__()
        self.dims = check_dims(dims)
        self.keep_depth = keep_depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dims == 3 and self.keep_depth:
            size = (x.shape[2], x.shape[3] * 2, x.shape[4] * 2)  # (D, 2H, 2W)
            return F.interpolate(x, size, mode="nearest")
        return F.interpolate(x, scale_factor=2, mode="nearest")


def timestep_embedding(t: torch.Tensor, dim: int, max_period: int = 10000) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps, cos first then sin.

    ``freq_k = exp(-ln(max_period) k / half)`` for ``k < half = dim // 2``; a zero column is appended if
    ``dim`` is odd.

    Args:
        t: (B,) timesteps (any numeric dtype; used as float).
        dim: embedding width.

    Returns:
        (B, dim) float32 embedding.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(0, half, dtype=torch.float32) / half).to(t.device)
    args = t[:, None].float() * freqs[None]  # (B, half)
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding
