"""ConvNet encoders, decoder and discriminator of the pythae drive, for 2-D and 3-D.

Notation: F = ``n_features``, C = ``in_channels``, L = ``latent_dim``, s = each spatial size. Every conv block
halves each axis (k4 s2 p1); the decoder rebuilds ``8·(s//8)`` per axis, so sizes must be multiples of 8 and
at least 16 (checked at construction).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseDiscriminator, BaseEncoder
from torch import nn

from Engineering.science.nn_utils import batch_norm_nd, conv_nd, conv_transpose_nd
from Engineering.warp_drives.pythae.nn.base import LatentHeads, check_net_sizes, check_spatial_shape, prod, run_layers

CONV_MULTIPLE = 8


def _down_blocks(dims: int, in_channels: int, n_features: int, block2_act: type[nn.Module]) -> nn.ModuleList:
    """Four Conv(k4,s2,p1)–BN–act blocks: C→F→2F→4F→8F; block 2 uses ``block2_act``."""
    chans = [in_channels, n_features, 2 * n_features, 4 * n_features, 8 * n_features]
    blocks = nn.ModuleList()
    for i in range(4):
        act = block2_act() if i == 1 else nn.ReLU()
        blocks.append(
            nn.Sequential(conv_nd(dims, chans[i], chans[i + 1], 4, 2, 1), batch_norm_nd(dims, chans[i + 1]), act)
        )
    return blocks


class ConvEncoder(BaseEncoder):
    """``Encoder_Conv_{AE,VAE,SVAE}_MED``: four halving conv blocks, flatten to ``8F·∏(s//16)``, linear heads.

    Input ``(B, C, *spatial)``; output ``ModelOutput(embedding (B, L)[, log_covariance (B, L)]
    [, log_concentration (B, 1)])`` plus ``embedding_layer_i`` for requested ``output_layer_levels`` (1..4).
    """

    def __init__(
        self,
        dims: int,
        spatial_shape: Sequence[int],
        in_channels: int,
        n_features: int,
        latent_dim: int,
        head: str = "vae",
    ) -> None:
        super().__init__()
        check_net_sizes(in_channels, n_features, latent_dim)
        self.spatial_shape = check_spatial_shape(spatial_shape, dims, CONV_MULTIPLE, "ConvNet")
        self.latent_dim = latent_dim
        self.layers = _down_blocks(dims, in_channels, n_features, nn.ReLU)
        self.depth = len(self.layers)
        self.heads = LatentHeads(8 * n_features * prod([s // 16 for s in self.spatial_shape]), latent_dim, head)

    def forward(self, x: torch.Tensor, output_layer_levels: list[int] | None = None) -> ModelOutput:
        """Encode ``x`` (B, C, *spatial) into the pythae encoder outputs."""
        out, output, full = run_layers(self.layers, x, output_layer_levels, "embedding")
        if full:
            output = self.heads(out.reshape(x.shape[0], -1), output)
        return output


class _Reshape(nn.Module):
    """Reshape ``(B, prod(shape))`` → ``(B, *shape)``."""

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)


class ConvDecoder(BaseDecoder):
    """``Decoder_Conv_AE_MED``: Linear(L → 8F·∏(s//8)), three ConvT–BN–ReLU, ConvT(F→C, k5 s1 p1)–Sigmoid.

    Input ``z`` (B, L); output ``ModelOutput(reconstruction (B, C, *spatial))`` in (0, 1), plus
    ``reconstruction_layer_i`` for requested ``output_layer_levels`` (1..5).
    """

    def __init__(
        self, dims: int, spatial_shape: Sequence[int], in_channels: int, n_features: int, latent_dim: int
    ) -> None:
        super().__init__()
        check_net_sizes(in_channels, n_features, latent_dim)
        self.spatial_shape = check_spatial_shape(spatial_shape, dims, CONV_MULTIPLE, "ConvNet")
        self.latent_dim = latent_dim
        f = n_features
        start = [8 * f] + [s // 8 for s in self.spatial_shape]  # (8F, s//8, ...)
        self.layers = nn.ModuleList(
            [
                nn.Sequential(nn.Linear(latent_dim, prod(start)), _Reshape(start)),
                nn.Sequential(conv_transpose_nd(dims, 8 * f, 4 * f, 5, 2, 2), batch_norm_nd(dims, 4 * f), nn.ReLU()),
                nn.Sequential(conv_transpose_nd(dims, 4 * f, 2 * f, 5, 2, 1), batch_norm_nd(dims, 2 * f), nn.ReLU()),
                nn.Sequential(conv_transpose_nd(dims, 2 * f, f, 5, 2, 2, 1), batch_norm_nd(dims, f), nn.ReLU()),
                nn.Sequential(conv_transpose_nd(dims, f, in_channels, 5, 1, 1), nn.Sigmoid()),
            ]
        )
        self.depth = len(self.layers)

    def forward(self, z: torch.Tensor, output_layer_levels: list[int] | None = None) -> ModelOutput:
        """Decode ``z`` (B, L) into ``reconstruction`` (B, C, *spatial)."""
        out, output, full = run_layers(self.layers, z, output_layer_levels, "reconstruction")
        if full:
            output["reconstruction"] = out
        return output


class ConvDiscriminator(BaseDiscriminator):
    """``Discriminator_Conv_MED``: the encoder trunk (Tanh after block 2), then Linear(→1)–Sigmoid.

    Used as the VAEGAN image discriminator (depth 5 so the CelebA ``reconstruction_layer`` 3 is
    valid). Input ``(B, C, *spatial)``; output ``ModelOutput(embedding (B, 1))`` plus ``embedding_layer_i``.
    """

    def __init__(self, dims: int, spatial_shape: Sequence[int], in_channels: int, n_features: int) -> None:
        super().__init__()
        check_net_sizes(in_channels, n_features, 1)
        self.spatial_shape = check_spatial_shape(spatial_shape, dims, CONV_MULTIPLE, "ConvNet")
        self.layers = _down_blocks(dims, in_channels, n_features, nn.Tanh)
        flat = 8 * n_features * prod([s // 16 for s in self.spatial_shape])
        self.layers.append(nn.Sequential(nn.Flatten(), nn.Linear(flat, 1), nn.Sigmoid()))
        self.depth = len(self.layers)

    def forward(self, x: torch.Tensor, output_layer_levels: list[int] | None = None) -> ModelOutput:
        """Score ``x`` (B, C, *spatial) as real (→1) or fake (→0)."""
        out, output, full = run_layers(self.layers, x, output_layer_levels, "embedding")
        if full:
            output["embedding"] = out
        return output
