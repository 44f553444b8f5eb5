"""ResNet encoders and decoders of the pythae drive, for 2-D and 3-D.

Notation: F = ``n_features``, C = ``in_channels``, L = ``latent_dim``. No normalisation anywhere. Blocks 3–4 of the
encoder round up while the heads assume ``s//16``, and the decoder rebuilds ``16·(s//16)``, so every spatial size
must be a multiple of 16 (checked at construction; the original crashed for e.g. depth 56).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder
from torch import nn

from Engineering.science.nn_utils import conv_nd, conv_transpose_nd
from Engineering.warp_drives.pythae.nn.base import LatentHeads, check_net_sizes, check_spatial_shape, prod, run_layers
from Engineering.warp_drives.pythae.nn.convnets import _Reshape

RESNET_MULTIPLE = 16


class ResBlock(nn.Module):
    """``x + Conv1×1(h→c)(ReLU(Conv3×3(c→h)(ReLU(x))))`` on ``(B, c, *spatial)``; shape preserved."""

    def __init__(self, dims: int, channels: int, hidden: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReLU(),
            conv_nd(dims, channels, hidden, 3, 1, 1),
            nn.ReLU(),
            conv_nd(dims, hidden, channels, 1, 1, 0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


def _res_pair(dims: int, n_features: int) -> nn.Sequential:
    """Two ResBlocks on 2F channels with hidden width F//2 (at least 1)."""
    hidden = max(1, n_features // 2)
    return nn.Sequential(ResBlock(dims, 2 * n_features, hidden), ResBlock(dims, 2 * n_features, hidden))


class ResNetEncoder(BaseEncoder):
    """``Encoder_ResNet_{AE,VAE,SVAE,VQVAE}_MED``.

    Trunk: Conv(C→F,k4s2p1), Conv(F→2F,k4s2p1), Conv(2F→2F,k3s2p1) ×2, 2×ResBlock → ``(B, 2F, *(s//16))``.
    Heads: ``ae``/``vae``/``svae`` flatten and use linear heads (``embedding`` (B, L) …); ``vqvae`` applies a 1×1
    conv and returns the latent map ``embedding`` (B, L, *(s//16)).
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
        self.spatial_shape = check_spatial_shape(spatial_shape, dims, RESNET_MULTIPLE, "ResNet")
        self.latent_dim = latent_dim
        f = n_features
        self.layers = nn.ModuleList(
            [
                conv_nd(dims, in_channels, f, 4, 2, 1),
                conv_nd(dims, f, 2 * f, 4, 2, 1),
                conv_nd(dims, 2 * f, 2 * f, 3, 2, 1),
                conv_nd(dims, 2 * f, 2 * f, 3, 2, 1),
                _res_pair(dims, f),
            ]
        )
        self.depth = len(self.layers)
        self.is_map = head == "vqvae"
        if self.is_map:
            self.pre_quantized = conv_nd(dims, 2 * f, latent_dim, 1, 1, 0)
        else:
            self.heads = LatentHeads(2 * f * prod([s // 16 for s in self.spatial_shape]), latent_dim, head)

    def forward(self, x: torch.Tensor, output_layer_levels: list[int] | None = None) -> ModelOutput:
        """Encode ``x`` (B, C, *spatial) into the pythae encoder outputs."""
        out, output, full = run_layers(self.layers, x, output_layer_levels, "embedding")
        if full:
            if self.is_map:
                output["embedding"] = self.pre_quantized(out)  # (B, L, *(s//16))
            else:
                output = self.heads(out.reshape(x.shape[0], -1), output)
        return output


class ResNetDecoder(BaseDecoder):
    """``Decoder_ResNet_AE_MED`` (``vqvae=False``) or ``Decoder_ResNet_VQVAE_MED`` (``vqvae=True``).

    AE input ``z`` (B, L) → Linear(L → 2F·∏(s//16)) → map; VQVAE input is the map (B, L, *(s//16)) → ConvT k1.
    Then ConvT(k3s2p1), 2×ResBlock, ConvT(k5s2p1)[–Sigmoid, AE only], ConvT(k5s2p1op1), ConvT(F→C,k4s2p1)–Sigmoid.
    Output ``ModelOutput(reconstruction (B, C, *spatial))`` plus ``reconstruction_layer_i`` (1..6).
    """

    def __init__(
        self,
        dims: int,
        spatial_shape: Sequence[int],
        in_channels: int,
        n_features: int,
        latent_dim: int,
        vqvae: bool = False,
    ) -> None:
        super().__init__()
        check_net_sizes(in_channels, n_features, latent_dim)
        self.spatial_shape = check_spatial_shape(spatial_shape, dims, RESNET_MULTIPLE, "ResNet")
        self.latent_dim = latent_dim
        f = n_features
        start = [2 * f] + [s // 16 for s in self.spatial_shape]  # (2F, s//16, ...)
        if vqvae:
            first: nn.Module = conv_transpose_nd(dims, latent_dim, 2 * f, 1, 1, 0)
            mid: nn.Module = conv_transpose_nd(dims, 2 * f, 2 * f, 5, 2, 1)
        else:
            first = nn.Sequential(nn.Linear(latent_dim, prod(start)), _Reshape(start))
            mid = nn.Sequential(conv_transpose_nd(dims, 2 * f, 2 * f, 5, 2, 1), nn.Sigmoid())
        self.layers = nn.ModuleList(
            [
                first,
                conv_transpose_nd(dims, 2 * f, 2 * f, 3, 2, 1),
                _res_pair(dims, f),
                mid,
                conv_transpose_nd(dims, 2 * f, f, 5, 2, 1, 1),
                nn.Sequential(conv_transpose_nd(dims, f, in_channels, 4, 2, 1), nn.Sigmoid()),
            ]
        )
        self.depth = len(self.layers)

    def forward(self, z: torch.Tensor, output_layer_levels: list[int] | None = None) -> ModelOutput:
        """Decode ``z`` into ``reconstruction`` (B, C, *spatial)."""
        out, output, full = run_layers(self.layers, z, output_layer_levels, "reconstruction")
        if full:
            output["reconstruction"] = out
        return output
