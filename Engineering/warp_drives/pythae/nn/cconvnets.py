"""Complex-valued ConvNet encoder/decoder (``nn: cvconvnet``), for 2-D and 3-D.

Same topology as :mod:`~Engineering.warp_drives.pythae.nn.convnets` with complex layers
(:class:`~Engineering.warp_drives.pythae.nn.complex_layers.ComplexPair`), ``modReLU`` instead of ReLU and
``Hirose`` instead of the final Sigmoid, so the decoder outputs complex values with magnitude < 1.
The complex ResNets of the original are broken and unsupported.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder
from torch import nn

from Engineering.science.nn_utils import batch_norm_nd, conv_nd, conv_transpose_nd
from Engineering.warp_drives.pythae.nn.base import check_net_sizes, check_spatial_shape, prod, run_layers
from Engineering.warp_drives.pythae.nn.complex_layers import (
    ComplexBatchNorm,
    ComplexPair,
    Hirose,
    ModReLU,
    interleave,
)
from Engineering.warp_drives.pythae.nn.convnets import CONV_MULTIPLE, _Reshape


def _cblock(dims: int, layer: ComplexPair, channels: int) -> nn.Sequential:
    """complex layer – complex BN – modReLU."""
    return nn.Sequential(layer, ComplexBatchNorm(lambda: batch_norm_nd(dims, channels)), ModReLU())


class CVConvEncoder(BaseEncoder):
    """``Encoder_CVConv_VAE_MED``: four halving complex conv blocks, complex flatten, three heads.

    Input ``(B, C, *spatial)`` complex. Output ``embedding`` μ (B, L) complex, ``log_covariance`` (B, L) real (a real
    Linear on the interleaved real/imag flatten), ``log_psuedocovariance`` (sic, the original's key) (B, L) complex.
    """

    def __init__(
        self, dims: int, spatial_shape: Sequence[int], in_channels: int, n_features: int, latent_dim: int
    ) -> None:
        super().__init__()
        check_net_sizes(in_channels, n_features, latent_dim)
        self.spatial_shape = check_spatial_shape(spatial_shape, dims, CONV_MULTIPLE, "complex ConvNet")
        self.latent_dim = latent_dim
        chans = [in_channels, n_features, 2 * n_features, 4 * n_features, 8 * n_features]
        self.layers = nn.ModuleList(
            _cblock(
                dims,
                # mypy cannot infer a lambda with a default argument (python/mypy#4226)
                ComplexPair(lambda i=i: conv_nd(dims, chans[i], chans[i + 1], 4, 2, 1)),  # type: ignore[misc]
                chans[i + 1],
            )
            for i in range(4)
        )
        self.depth = len(self.layers)
        flat = 8 * n_features * prod([s // 16 for s in self.spatial_shape])
        self.embedding = ComplexPair(lambda: nn.Linear(flat, latent_dim))
        self.log_var = nn.Linear(2 * flat, latent_dim)
        self.log_pseudo_var = ComplexPair(lambda: nn.Linear(flat, latent_dim))

    def forward(self, x: torch.Tensor, output_layer_levels: list[int] | None = None) -> ModelOutput:
        """Encode complex ``x`` (B, C, *spatial)."""
        out, output, full = run_layers(self.layers, x, output_layer_levels, "embedding")
        if full:
            flat = out.reshape(x.shape[0], -1)  # (B, N) complex
            output["embedding"] = self.embedding(flat)
            output["log_covariance"] = self.log_var(interleave(flat))
            output["log_psuedocovariance"] = self.log_pseudo_var(flat)
        return output


class CVConvDecoder(BaseDecoder):
    """``Decoder_CVConv_AE_MED``: complex Linear(L → 8F·∏(s//8)), three complex ConvT blocks, ConvT(F→C)–Hirose.

    Input complex ``z`` (B, L); output ``reconstruction`` (B, C, *spatial) complex with |·| < 1.
    """

    def __init__(
        self, dims: int, spatial_shape: Sequence[int], in_channels: int, n_features: int, latent_dim: int
    ) -> None:
        super().__init__()
        check_net_sizes(in_channels, n_features, latent_dim)
        self.spatial_shape = check_spatial_shape(spatial_shape, dims, CONV_MULTIPLE, "complex ConvNet")
        self.latent_dim = latent_dim
        f = n_features
        start = [8 * f] + [s // 8 for s in self.spatial_shape]  # (8F, s//8, ...)

        def convt(c_in: int, c_out: int, k: int, s: int, p: int, op: int = 0) -> ComplexPair:
            return ComplexPair(lambda: conv_transpose_nd(dims, c_in, c_out, k, s, p, op))

        self.layers = nn.ModuleList(
            [
                nn.Sequential(ComplexPair(lambda: nn.Linear(latent_dim, prod(start))), _Reshape(start)),
                _cblock(dims, convt(8 * f, 4 * f, 5, 2, 2), 4 * f),
                _cblock(dims, convt(4 * f, 2 * f, 5, 2, 1), 2 * f),
                _cblock(dims, convt(2 * f, f, 5, 2, 2, 1), f),
                nn.Sequential(convt(f, in_channels, 5, 1, 1), Hirose()),
            ]
        )
        self.depth = len(self.layers)

    def forward(self, z: torch.Tensor, output_layer_levels: list[int] | None = None) -> ModelOutput:
        """Decode complex ``z`` (B, L) into ``reconstruction`` (B, C, *spatial)."""
        out, output, full = run_layers(self.layers, z, output_layer_levels, "reconstruction")
        if full:
            output["reconstruction"] = out
        return output
