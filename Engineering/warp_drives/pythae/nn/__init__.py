"""The pythae drive's own encoder/decoder networks ("MED" nets), 2-D and 3-D from one factory."""

from __future__ import annotations

from collections.abc import Sequence

from pythae.models.nn import BaseDecoder, BaseEncoder

from Engineering.errors import ConfigError
from Engineering.warp_drives.pythae.nn.cconvnets import CVConvDecoder, CVConvEncoder
from Engineering.warp_drives.pythae.nn.convnets import ConvDecoder, ConvDiscriminator, ConvEncoder
from Engineering.warp_drives.pythae.nn.resnets import ResNetDecoder, ResNetEncoder

NN_FAMILIES = {"convnet": "convnet", "resnet": "resnet", "cvconvnet": "cvconvnet", "cconvnet": "cvconvnet"}
COMPLEX_NN = ("cvconvnet",)
UNSUPPORTED_NN = ("cvresnet", "cresnet")

__all__ = [
    "COMPLEX_NN",
    "CVConvDecoder",
    "CVConvEncoder",
    "NN_FAMILIES",
    "ConvDecoder",
    "ConvDiscriminator",
    "ConvEncoder",
    "ResNetDecoder",
    "ResNetEncoder",
    "build_nets",
    "resolve_nn",
]


def resolve_nn(nn_name: str | None) -> str:
    """Map the YAML ``model.pythae.nn`` value to a family (``convnet`` | ``resnet`` | ``cvconvnet``).

    A missing value means ``convnet`` (the original's default ``"ResNet"`` was not accepted);
    ``cconvnet`` is an alias of ``cvconvnet``. The complex ResNets are broken in the original and rejected.
    """
    name = "convnet" if nn_name in (None, "") else str(nn_name).lower()
    if name in UNSUPPORTED_NN:
        raise ConfigError(
            f"model.pythae.nn={nn_name!r}: the complex ResNets are not supported (broken in the original); "
            f"valid values: {', '.join(NN_FAMILIES)}"
        )
    if name not in NN_FAMILIES:
        raise ConfigError(f"model.pythae.nn={nn_name!r} is not a known network; valid values: {', '.join(NN_FAMILIES)}")
    return NN_FAMILIES[name]


def build_nets(
    family: str,
    head: str,
    dims: int,
    spatial_shape: Sequence[int],
    in_channels: int,
    n_features: int,
    latent_dim: int,
    decoder_latent_dim: int | None = None,
) -> tuple[BaseEncoder, BaseDecoder]:
    """Build the encoder/decoder pair for one pythae model.

    Args:
        family: ``convnet``, ``resnet`` or ``cvconvnet`` (see :func:`resolve_nn`).
        head: ``ae``, ``vae``, ``svae`` or ``vqvae`` (encoder head; ``vqvae`` with ConvNet uses the AE head).
        dims: 2 or 3.
        spatial_shape: spatial sizes only, e.g. ``(16, 16)``.
        in_channels, n_features, latent_dim: C, F and L.
        decoder_latent_dim: decoder input size when it differs from ``latent_dim`` (LSTM wrapper).
    """
    dec_latent = latent_dim if decoder_latent_dim is None else decoder_latent_dim
    if family == "cvconvnet":
        if head != "vae":
            raise ConfigError(f"nn='cvconvnet' has only the VAE encoder head, not {head!r} (use a complex model)")
        encoder_cv = CVConvEncoder(dims, spatial_shape, in_channels, n_features, latent_dim)
        return encoder_cv, CVConvDecoder(dims, spatial_shape, in_channels, n_features, dec_latent)
    if family == "resnet":
        if head == "vqvae" and dims == 3:
            raise ConfigError(
                "vqvae with nn='resnet' is 2-D only (pythae's quantiser permutes 4-D latent maps); "
                "use nn='convnet' for 3-D vqvae"
            )
        encoder = ResNetEncoder(dims, spatial_shape, in_channels, n_features, latent_dim, head)
        decoder = ResNetDecoder(dims, spatial_shape, in_channels, n_features, dec_latent, vqvae=head == "vqvae")
        return encoder, decoder
    enc_head = "ae" if head == "vqvae" else head
    encoder = ConvEncoder(dims, spatial_shape, in_channels, n_features, latent_dim, enc_head)
    return encoder, ConvDecoder(dims, spatial_shape, in_channels, n_features, dec_latent)
