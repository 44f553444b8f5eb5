"""Custom FactorVAE: l1/mse/bce losses without pythae's ½, odd-batch halves, config loading."""

from __future__ import annotations

import math

import pytest
import torch

from Engineering.errors import ConfigError
from Engineering.warp_drives.pythae.custom_models.factor_vae import summed_reconstruction_loss
from Engineering.warp_drives.pythae.station import PythaeStation

SHAPES = {"2d": (16, 16), "3d": (16, 16, 16)}


def station(dim: str = "2d", loss: str = "l1", pythae_config: str = "") -> PythaeStation:
    shape = SHAPES[dim]
    yaml_pythae = {"n_features": 4, "reconstruction_loss": loss}
    return PythaeStation.from_options("custom_factor_vae", shape, 1, dim == "3d", 8, yaml_pythae, pythae_config)


@pytest.mark.parametrize("dim", SHAPES)
@pytest.mark.parametrize("loss", ["l1", "mse", "bce"])
def test_trains_with_each_loss(dim: str, loss: str) -> None:
    torch.manual_seed(0)
    st = station(dim, loss)
    assert st.trainer_mode == "adversarial" and st.resolved.config.gamma == 0.5
    x = torch.rand(5, 1, *SHAPES[dim])
    out = st(x)
    assert torch.isfinite(out.loss)
    assert out.recon_x.shape[0] == 3 and out.recon_x_indices.shape == (3,)  # larger half reconstructed
    opts = [torch.optim.Adam(p, lr=1e-3) for p in st.parameter_groups()]
    before = st.model.discriminator.layers[0].weight.detach().clone()
    st.manual_step(out, opts)
    assert not torch.equal(before, st.model.discriminator.layers[0].weight)
    assert st.predict(x)["embedding"].shape == (5, 8)


def test_summed_losses_have_no_half() -> None:
    x = torch.zeros(2, 1, 2, 2)
    recon = torch.full((2, 1, 2, 2), 0.5)
    assert torch.allclose(summed_reconstruction_loss("mse", recon, x), torch.tensor([1.0, 1.0]))
    assert torch.allclose(summed_reconstruction_loss("l1", recon, x), torch.tensor([2.0, 2.0]))
    with pytest.raises(ValueError, match="valid values: mse, bce, l1"):
        summed_reconstruction_loss("ssim", recon, x)


def test_gamma_json_loads_for_custom_model() -> None:
    """The repo's gammaHalf JSON (l1, gamma 0.5, latent 128) works with the custom model."""
    st = PythaeStation.from_options(
        "custom_factor_vae", (16, 16), 1, False, -1, {"n_features": 4}, "factor_vae_config_gammaQuarter.json"
    )
    assert st.resolved.config.reconstruction_loss == "l1" and st.resolved.config.gamma == 0.25
    assert st.latent_dim == 128


def test_unsupported_losses_named() -> None:
    with pytest.raises(
        ConfigError,
        match="'ssim' is not supported by custom_factor_vae; valid values: mse, bce, l1, custom, custom_masked",
    ):
        station(loss="ssim")
    with pytest.raises(ConfigError, match="'custom_masked' needs model.pythae.custom_loss_class"):
        station(loss="custom_masked")


MASKED = {"custom_loss_class": "Engineering.Science.losses.masked_loss.MaskedReconLoss"}


@pytest.mark.parametrize("dim", SHAPES)
def test_custom_masked_loss_uses_the_mask(dim: str) -> None:
    torch.manual_seed(0)
    yaml_pythae = {"n_features": 4, "reconstruction_loss": "custom_masked", **MASKED,
                   "custom_loss_params": "{'loss_fn': 'l1', 'mode': '1'}"}  # fmt: skip
    st = PythaeStation.from_options("custom_factor_vae", SHAPES[dim], 1, dim == "3d", 8, yaml_pythae)
    assert type(st.model.custom_recon_loss_func).__name__ == "MaskedReconLoss"
    assert "model.custom_recon_loss_func" not in dict(st.named_parameters())  # parameter-free module
    x = torch.rand(4, 1, *SHAPES[dim])
    out = st(x, extras={"mask": torch.ones_like(x)})
    opts = [torch.optim.Adam(p, lr=1e-3) for p in st.parameter_groups()]
    st.manual_step(out, opts)
    assert torch.isfinite(out.loss)
    with pytest.raises(ConfigError, match="needs masks in the batch.*data_mask_mode: 2"):
        st(x)


def test_custom_losses_rejected_elsewhere_and_paths_checked() -> None:
    with pytest.raises(ConfigError, match="not supported by vae"):
        PythaeStation.from_options("vae", (16, 16), 1, False, 8, {"reconstruction_loss": "custom", **MASKED})
    bad = {"n_features": 4, "reconstruction_loss": "custom", "custom_loss_class": "os.system"}
    with pytest.raises(ConfigError, match="custom_loss_class 'os.system' is not an Engineering.\\* class"):
        PythaeStation.from_options("custom_factor_vae", (16, 16), 1, False, 8, bad)


def test_loss_terms_by_hand() -> None:
    """KLD, γ·TC and the discriminator CE on fixed scores: recon Σ|0.5| = 2, KLD given, TC = 1, γ = 0.5."""
    from Engineering.warp_drives.pythae.custom_models.factor_vae import standard_normal_kl

    assert torch.allclose(standard_normal_kl(torch.ones(1, 2), torch.zeros(1, 2)), torch.tensor([1.0]))
    model = station().model
    model.discriminator.forward = lambda z: torch.tensor([[1.0, 0.0]]).expand(z.shape[0], 2)
    recon, x = torch.full((2, 1, 2, 2), 0.5), torch.zeros(2, 1, 2, 2)
    kld = torch.tensor([1.0, 3.0])
    recon_loss, ae_loss, disc_loss = model.loss_function(recon, x, kld, torch.zeros(2, 8), torch.zeros(2, 8))
    assert torch.allclose(recon_loss, torch.tensor(2.0))
    assert torch.allclose(ae_loss, torch.tensor(2.0 + 2.0 + 0.5 * 1.0))
    # ½·[CE([1, 0] → class 0) + CE([1, 0] → class 1)] = ½·[log(1 + e⁻¹) + log(1 + e)]
    assert torch.allclose(disc_loss, torch.tensor(0.5 * (math.log1p(math.exp(-1)) + math.log1p(math.e))))
