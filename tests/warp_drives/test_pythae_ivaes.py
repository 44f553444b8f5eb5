"""iVAE / IDVAE / CI-iVAE: closed-form loss terms, the CI table, training, errors."""

from __future__ import annotations

import math

import pytest
import torch

from Engineering.errors import ConfigError
from Engineering.warp_drives.pythae.custom_models.ivaes import (
    gaussian_kl,
    gaussian_log_density,
    product_of_gaussians,
)
from Engineering.warp_drives.pythae.station import PythaeStation

SHAPES = {"2d": (16, 16), "3d": (16, 16, 16)}


def station(dim: str = "2d", n_phenotypes: int = 3, **settings: object) -> PythaeStation:
    yaml_pythae = {"n_features": 4, "reconstruction_loss": "l1", "models": {"ivaes": {"M": 8, **settings}}}
    return PythaeStation.from_options(
        "custom_ivaes", SHAPES[dim], 1, dim == "3d", 8, yaml_pythae, counts={"n_phenotypes": n_phenotypes}
    )


def test_gaussian_kl_closed_forms() -> None:
    zero = torch.zeros(1, 2)
    # KL(N(1, 1) ‖ N(0, 1)) = ½ per dim
    assert torch.allclose(gaussian_kl(zero + 1, zero, zero, zero), torch.tensor([1.0]))
    # KL(N(0, 1) ‖ N(0, 4)) = ½·log 4 + 1/8 − ½ per dim
    expected = 2 * (0.5 * math.log(4) + 1 / 8 - 0.5)
    assert torch.allclose(gaussian_kl(zero, zero, zero, zero + math.log(4)), torch.tensor([expected]))
    # IDVAE's KL_cond is against N(0, log σ² = 1): ½ + 1/(2e) − ½ per dim at μ = 0, log σ² = 0
    assert torch.allclose(gaussian_kl(zero, zero, zero, zero + 1), torch.tensor([2 / (2 * math.e)]))


def test_product_of_gaussians_and_log_density() -> None:
    mu, lv = product_of_gaussians(torch.tensor([[2.0]]), torch.zeros(1, 1), torch.tensor([[0.0]]), torch.zeros(1, 1))
    assert torch.allclose(mu, torch.tensor([[1.0]])) and torch.allclose(lv, torch.tensor([[-math.log(2)]]))
    z = torch.tensor([[1.0, 3.0]])
    assert torch.allclose(gaussian_log_density(z, torch.zeros(1, 2), torch.zeros(1, 2)), torch.tensor([-5.0]))


def test_ci_table_reduces_to_the_better_elbo_when_posteriors_agree() -> None:
    """With q == post every skew term is |mean log 1| = 0, so the min is the smaller of −elbo_iVAE, −elbo_VAE."""
    model = station().model
    assert model.alphas(torch.device("cpu")).shape == (39,)
    stats = (torch.zeros(2, 8), torch.zeros(2, 8))
    loss = model.ci_loss(torch.tensor([-1.0, -4.0]), torch.tensor([-3.0, -2.0]), stats, stats)
    assert torch.allclose(loss, torch.tensor([1.0, 2.0]))


@pytest.mark.parametrize("dim", SHAPES)
@pytest.mark.parametrize("mode", ["iVAE", "IDVAE", "CI-iVAE"])
def test_each_mode_trains_without_touching_the_batch(mode: str, dim: str) -> None:
    torch.manual_seed(0)
    st = station(dim, ivae_mode=mode)
    x = torch.rand(4, 1, *SHAPES[dim])
    original = x.clone()
    out = st(x, extras={"phenotypes": torch.randn(4, 3)})
    assert torch.equal(x, original)  # the noise goes to a copy
    terms = set(st.loss_terms(out))
    expected = {"iVAE": set(), "IDVAE": {"loss_kl_cond"}, "CI-iVAE": {"loss_elbo_VAE_with_label_prior"}}[mode]
    assert terms == {"loss", "loss_elbo_iVAE"} | expected and torch.isfinite(out.loss)
    if mode == "iVAE":
        assert torch.allclose(out.loss, out.loss_elbo_iVAE)
    prior = st.model.label_prior.mean.weight
    before = prior.detach().clone()
    st.manual_step(out, [torch.optim.Adam(p, lr=1e-2) for p in st.parameter_groups()])
    assert not torch.equal(before, prior)
    pred = st.predict(x)
    assert pred["embedding"].shape == (4, 8) and pred["recon_x"].shape == x.shape


def test_predict_uses_mu_unless_reparameterised() -> None:
    torch.manual_seed(0)
    st = station().eval()
    x = torch.rand(2, 1, 16, 16)
    assert torch.allclose(st.predict(x)["embedding"], st.model.encoder(x).embedding)
    st = station(predict_reparameterised=True).eval()
    assert not torch.allclose(st.predict(x)["embedding"], st.model.encoder(x).embedding)


def test_bad_settings_fail_clearly() -> None:
    with pytest.raises(ConfigError, match="n_phenotypes=0 must be ≥ 1"):
        station(n_phenotypes=0)
    with pytest.raises(ConfigError, match="kl_annealing=True is not supported; valid: False"):
        station(kl_annealing=True)
    with pytest.raises(ConfigError, match="custom_ivaes config is invalid.*ivae_mode"):
        station(ivae_mode="VAE")
    with pytest.raises(ConfigError, match=r"alpha_step=0.7 must lie in \(0, 0.5\)"):
        station(alpha_step=0.7)
