"""The DiffAE networks: semantic encoder ("half UNet") and the autoencoding denoiser UNet.

Both are built level by level from :func:`_encoder_level`; the module names and registration order give the
original state-dict keys (``time_embed.time_embed.*``, ``input_blocks.*``, ``middle_block.*``,
``output_blocks.*``, ``out.*``, ``encoder.*``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from Engineering.errors import ConfigError
from Engineering.science.nn_utils import adaptive_avg_pool_nd, conv_nd, normalization, timestep_embedding, zero_module

from .blocks import AttentionBlock, ResBlock, TimestepEmbedSequential
from .config import DiffAEConfig


@dataclass(frozen=True)
class UNetSpec:
    """Architecture of one trunk (denoiser or encoder). ``use_condition`` False builds encoder-style ResBlocks."""

    dims: int
    in_channels: int
    model_channels: int
    channel_mult: tuple[int, ...]
    num_res_blocks: int
    attention_resolutions: tuple[int, ...]
    image_size: int
    group_limit: int
    keep_depth: bool = True
    use_condition: bool = True
    emb_channels: int | None = None
    cond_channels: int | None = None
    dropout: float = 0.0
    use_zero_module: bool = True
    attention_mode: str = "sdpa"

    def resblock(self, ch: int, out_ch: int, **kwargs) -> ResBlock:
        """A ResBlock with this trunk's shared settings."""
        return ResBlock(
            ch,
            dims=self.dims,
            out_channels=out_ch,
            emb_channels=self.emb_channels,
            cond_channels=self.cond_channels,
            dropout=self.dropout if self.use_condition else 0.0,
            use_condition=self.use_condition,
            group_limit=self.group_limit,
            use_zero_module=self.use_zero_module,
            keep_depth=self.keep_depth,
            **kwargs,
        )

    def attention(self, ch: int) -> AttentionBlock:
        """A single-head AttentionBlock."""
        return AttentionBlock(
            ch, group_limit=self.group_limit, use_zero_module=self.use_zero_module, mode=self.attention_mode
        )


def _encoder_level(
    spec: UNetSpec, level: int, ch: int, resolution: int, blocks: nn.ModuleList, widths: list[list[int]]
) -> tuple[int, int]:
    """Append one down-path level (nres ResBlocks [+ attention], then a down ResBlock unless last).

    ``widths[l]`` records the output width of every input block that belongs to level l (skip sources).
    Returns the new (channels, nominal resolution).
    """
    out_ch = spec.model_channels * spec.channel_mult[level]
    for _ in range(spec.num_res_blocks):
        layers: list[nn.Module] = [spec.resblock(ch, out_ch)]
        ch = out_ch
        if resolution in spec.attention_resolutions:
            layers.append(spec.attention(ch))
        blocks.append(TimestepEmbedSequential(*layers))
        widths[level].append(ch)
    if level != len(spec.channel_mult) - 1:
        blocks.append(TimestepEmbedSequential(spec.resblock(ch, ch, down=True)))
        widths[level + 1].append(ch)
        resolution //= 2
    return ch, resolution


def _decoder_level(
    spec: UNetSpec, level: int, ch: int, resolution: int, blocks: nn.ModuleList, widths: list[list[int]]
) -> tuple[int, int]:
    """Append one up-path level: nres+1 lateral ResBlocks [+ attention], the last one followed by an up ResBlock.

    Skip widths are popped last-in-first-out from ``widths[level]``. Returns the new (channels, resolution).
    """
    out_ch = spec.model_channels * spec.channel_mult[level]
    for i in range(spec.num_res_blocks + 1):
        skip = widths[level].pop()
        layers: list[nn.Module] = [spec.resblock(ch, out_ch, has_lateral=True, lateral_channels=skip)]
        ch = out_ch
        if resolution in spec.attention_resolutions:
            layers.append(spec.attention(ch))
        if level and i == spec.num_res_blocks:
            layers.append(spec.resblock(ch, ch, up=True))
            resolution *= 2
        blocks.append(TimestepEmbedSequential(*layers))
    return ch, resolution


def _build_down_path(spec: UNetSpec) -> tuple[nn.ModuleList, TimestepEmbedSequential, int, int, list[list[int]]]:
    """Stem, input blocks and middle block. Returns (input_blocks, middle_block, channels, resolution, widths)."""
    ch = spec.model_channels * spec.channel_mult[0]
    blocks = nn.ModuleList([TimestepEmbedSequential(conv_nd(spec.dims, spec.in_channels, ch, 3, padding=1))])
    widths: list[list[int]] = [[] for _ in spec.channel_mult]
    widths[0].append(ch)
    resolution = spec.image_size
    for level in range(len(spec.channel_mult)):
        ch, resolution = _encoder_level(spec, level, ch, resolution, blocks, widths)
    middle = TimestepEmbedSequential(spec.resblock(ch, ch), spec.attention(ch), spec.resblock(ch, ch))
    return blocks, middle, ch, resolution, widths


class SemanticEncoder(nn.Module):
    """Half UNet with unconditioned ResBlocks: (B, C_in, *S) -> z_sem (B, out_channels)."""

    def __init__(self, spec: UNetSpec, out_channels: int) -> None:
        super().__init__()
        if spec.use_condition:
            raise ConfigError("SemanticEncoder needs a spec with use_condition=False")
        self.input_blocks, self.middle_block, ch, _, _ = _build_down_path(spec)
        self.out = nn.Sequential(
            normalization(ch, spec.group_limit),
            nn.SiLU(),
            adaptive_avg_pool_nd(spec.dims, 1),
            conv_nd(spec.dims, ch, out_channels, 1),
            nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        for block in self.input_blocks:
            h = block(h)
        h = self.middle_block(h)
        return self.out(h.type(x.dtype))  # (B, out_channels)


class TimeStyleSeparateEmbed(nn.Module):
    """Time MLP ``time_embed`` (Linear, SiLU, Linear); the z_sem "style" branch is the identity."""

    def __init__(self, time_channels: int, out_channels: int) -> None:
        super().__init__()
        self.time_embed = nn.Sequential(
            nn.Linear(time_channels, out_channels), nn.SiLU(), nn.Linear(out_channels, out_channels)
        )

    def forward(self, t_emb: torch.Tensor) -> torch.Tensor:
        """(B, time_channels) sinusoid -> (B, out_channels)."""
        return self.time_embed(t_emb)


class BeatGANsAutoencUNet(nn.Module):
    """Autoencoding denoiser UNet ε̂(x_t, t, z_sem) with its semantic encoder under ``.encoder``.

    Args:
        spec: denoiser trunk (``use_condition=True``).
        encoder_spec: encoder trunk (``use_condition=False``).
        out_channels: channels of ε̂.
        latent_dim: z_sem width (encoder output).
    """

    def __init__(self, spec: UNetSpec, encoder_spec: UNetSpec, out_channels: int, latent_dim: int) -> None:
        super().__init__()
        if not spec.use_condition or spec.emb_channels is None:
            raise ConfigError("the denoiser spec must be conditioned and have emb_channels")
        self.model_channels = spec.model_channels
        self.time_embed = TimeStyleSeparateEmbed(spec.model_channels, spec.emb_channels)
        self.input_blocks, self.middle_block, ch, resolution, widths = _build_down_path(spec)
        # blocks per level, to route skips: level 0 = stem + nres, the others = down block + nres
        self._blocks_per_level = [len(w) for w in widths]
        self.output_blocks = nn.ModuleList()
        for level in reversed(range(len(spec.channel_mult))):
            ch, resolution = _decoder_level(spec, level, ch, resolution, self.output_blocks, widths)
        self.out = nn.Sequential(
            normalization(ch, spec.group_limit),
            nn.SiLU(),
            _maybe_zero(conv_nd(spec.dims, ch, out_channels, 3, padding=1), spec.use_zero_module),
        )
        self.encoder = SemanticEncoder(encoder_spec, latent_dim)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Semantic latent z_sem: (B, C_in, *S) -> (B, latent)."""
        return self.encoder(x)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: torch.Tensor | None = None,
        x_start: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict ε for x_t.

        Args:
            x: x_t (B, C_in, *S).
            t: (B,) integer timesteps 0..T-1 (not rescaled).
            cond: z_sem (B, latent); if None it is computed as ``encode(x_start)``.
            x_start: clean input (B, C_in, *S), used only when ``cond`` is None.

        Returns:
            ε̂ (B, out_channels, *S).
        """
        if cond is None:
            if x_start is None:
                raise ValueError("DiffAE forward needs cond (z_sem) or x_start to encode")
            cond = self.encode(x_start)
        emb = self.time_embed(timestep_embedding(t, self.model_channels))  # (B, E)
        h = x.float()
        skips: list[list[torch.Tensor]] = [[] for _ in self._blocks_per_level]
        blocks = iter(self.input_blocks)
        for level, n in enumerate(self._blocks_per_level):
            for _ in range(n):
                h = next(blocks)(h, emb=emb, cond=cond)
                skips[level].append(h)
        h = self.middle_block(h, emb=emb, cond=cond)
        blocks = iter(self.output_blocks)
        for level in reversed(range(len(self._blocks_per_level))):
            while skips[level]:
                h = next(blocks)(h, emb=emb, cond=cond, lateral=skips[level].pop())
        return self.out(h)


def _maybe_zero(module: nn.Module, zero: bool) -> nn.Module:
    return zero_module(module) if zero else module


def build_diffae_net(cfg: DiffAEConfig) -> BeatGANsAutoencUNet:
    """Build the autoencoding UNet (with ``.encoder``) for a resolved :class:`DiffAEConfig`."""
    common: dict[str, Any] = dict(
        dims=cfg.n_dims,
        in_channels=cfg.in_channels,
        model_channels=cfg.net_ch,
        image_size=cfg.img_size,
        group_limit=cfg.group_norm_limit,
        keep_depth=cfg.keep_depth,
        use_zero_module=cfg.net_beatgans_resnet_use_zero_module,
        attention_mode=cfg.attention,
    )
    spec = UNetSpec(
        **common,
        channel_mult=tuple(cfg.net_ch_mult),
        num_res_blocks=cfg.net_num_res_blocks,
        attention_resolutions=tuple(cfg.net_attn),
        use_condition=True,
        emb_channels=cfg.embed_channels,
        cond_channels=cfg.net_beatgans_resnet_cond_channels or cfg.embed_channels,
        dropout=cfg.dropout,
    )
    encoder_spec = UNetSpec(
        **common,
        channel_mult=tuple(cfg.net_enc_channel_mult),
        num_res_blocks=cfg.net_enc_num_res_blocks,
        attention_resolutions=tuple(cfg.net_enc_attn or cfg.net_attn),
        use_condition=False,
    )
    net = BeatGANsAutoencUNet(spec, encoder_spec, cfg.out_channels, cfg.style_ch)
    set_grad_checkpoint(net, cfg.grad_checkpoint)
    return net


def set_grad_checkpoint(net: nn.Module, enabled: bool) -> None:
    """Activation checkpointing of every res and attention block of ``net`` (training only; no state-dict change)."""
    for module in net.modules():
        if isinstance(module, (ResBlock, AttentionBlock)):
            module.grad_checkpoint = bool(enabled)
