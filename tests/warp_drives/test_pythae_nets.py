"""MED encoder/decoder/discriminator nets of the pythae drive: shapes in 2-D and 3-D, levels, size checks."""

from __future__ import annotations

import pytest
import torch

from Engineering.errors import ConfigError
from Engineering.warp_drives.pythae.nn import ConvDiscriminator, build_nets, resolve_nn

SHAPES = {"2d": (16, 16), "3d": (16, 16, 16)}
C, F, L, B = 2, 4, 8, 3


@pytest.mark.parametrize("dim", SHAPES)
@pytest.mark.parametrize("family", ["convnet", "resnet"])
@pytest.mark.parametrize("head", ["ae", "vae", "svae"])
def test_encoder_decoder_shapes(dim: str, family: str, head: str) -> None:
    shape = SHAPES[dim]
    encoder, decoder = build_nets(family, head, len(shape), shape, C, F, L)
    x = torch.rand(B, C, *shape)
    out = encoder(x)
    assert out.embedding.shape == (B, L)
    if head == "vae":
        assert out.log_covariance.shape == (B, L)
    if head == "svae":
        assert out.log_concentration.shape == (B, 1)
    recon = decoder(out.embedding).reconstruction
    assert recon.shape == x.shape
    assert float(recon.min()) >= 0.0 and float(recon.max()) <= 1.0


def test_non_square_conv_shape() -> None:
    encoder, decoder = build_nets("convnet", "vae", 2, (16, 24), C, F, L)
    assert decoder(encoder(torch.rand(B, C, 16, 24)).embedding).reconstruction.shape == (B, C, 16, 24)


def test_vqvae_resnet_latent_map_2d_and_3d_rejected() -> None:
    encoder, decoder = build_nets("resnet", "vqvae", 2, (32, 32), C, F, L)
    z = encoder(torch.rand(B, C, 32, 32)).embedding
    assert z.shape == (B, L, 2, 2)
    assert decoder(z).reconstruction.shape == (B, C, 32, 32)
    with pytest.raises(ConfigError, match="2-D only"):
        build_nets("resnet", "vqvae", 3, (16, 16, 16), C, F, L)


@pytest.mark.parametrize("dim", SHAPES)
def test_output_layer_levels(dim: str) -> None:
    shape = SHAPES[dim]
    encoder, decoder = build_nets("convnet", "vae", len(shape), shape, C, F, L)
    x = torch.rand(B, C, *shape)
    partial = encoder(x, output_layer_levels=[2])
    assert set(partial.keys()) == {"embedding_layer_2"}
    assert partial["embedding_layer_2"].shape == (B, 2 * F, *[s // 4 for s in shape])
    full = decoder(torch.rand(B, L), output_layer_levels=[-1])
    assert {f"reconstruction_layer_{i}" for i in range(1, 6)} | {"reconstruction"} == set(full.keys())


@pytest.mark.parametrize("dim", SHAPES)
def test_discriminator_depth_and_levels(dim: str) -> None:
    shape = SHAPES[dim]
    disc = ConvDiscriminator(len(shape), shape, C, F)
    assert disc.depth == 5
    out = disc(torch.rand(B, C, *shape), output_layer_levels=[3])
    assert set(out.keys()) == {"embedding_layer_3"}
    score = disc(torch.rand(B, C, *shape)).embedding
    assert score.shape == (B, 1)


@pytest.mark.parametrize(
    ("family", "shape", "expected"),
    [
        ("convnet", (4, 16, 16), "axis 0 has size 4.*multiple of 8 and at least 16.*valid sizes near it: 16"),
        ("convnet", (50, 128, 128), "axis 0 has size 50.*valid sizes near it: 48, 56"),
        ("resnet", (56, 128, 128), "axis 0 has size 56.*ResNet.*multiple of 16.*48, 64"),
    ],
)
def test_bad_spatial_sizes_name_valid_ones(family: str, shape: tuple[int, ...], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        build_nets(family, "vae", len(shape), shape, C, F, L)


def test_bad_sizes_and_dims() -> None:
    with pytest.raises(ConfigError, match="n_features=0 must be a positive integer"):
        build_nets("convnet", "vae", 2, (16, 16), C, 0, L)
    with pytest.raises(ConfigError, match="dims=1 is not supported; the pythae nets take dims 2 or 3"):
        build_nets("convnet", "vae", 1, (16,), C, F, L)
    with pytest.raises(ConfigError, match="has 2 spatial axes but the 3-D nets need 3"):
        build_nets("convnet", "vae", 3, (16, 16), C, F, L)


def test_resolve_nn() -> None:
    assert resolve_nn(None) == "convnet"
    assert resolve_nn("ResNet") == "resnet"
    assert resolve_nn("cconvnet") == "cvconvnet"
    with pytest.raises(
        ConfigError, match="complex ResNets are not supported.*valid values: convnet, resnet, cvconvnet"
    ):
        resolve_nn("cvresnet")
    with pytest.raises(ConfigError, match="'unet' is not a known network"):
        resolve_nn("unet")
