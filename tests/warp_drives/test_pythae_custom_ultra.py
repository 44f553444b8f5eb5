"""Ultra models: phenotype head, CE noise branch, UltraFactorVAE optimiser plan, errors."""

from __future__ import annotations

import pytest
import torch

from Engineering.errors import ConfigError
from Engineering.warp_drives.pythae.station import PythaeStation

SHAPES = {"2d": (16, 16), "3d": (16, 16, 16)}
NAMES = ["custom_ultra_vae", "custom_ultra_cevae", "custom_ultra_factor_vae"]


def station(name: str, dim: str = "2d", **settings: object) -> PythaeStation:
    models = {name.removeprefix("custom_"): {"learn_phenotypes": True, "lambda_phenotype_loss": 2.0, **settings}}
    yaml_pythae = {"n_features": 4, "reconstruction_loss": "l1", "models": models}
    return PythaeStation.from_options(name, SHAPES[dim], 1, dim == "3d", 8, yaml_pythae, counts={"n_phenotypes": 3})


@pytest.mark.parametrize("dim", SHAPES)
@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_predict_with_phenotypes(name: str, dim: str) -> None:
    torch.manual_seed(0)
    st = station(name, dim)
    assert st.resolved.config.lambda_pheno_loss == 2.0  # the original YAML's spelling is accepted
    x = torch.rand(4, 1, *SHAPES[dim])
    out = st(x, extras={"phenotypes": torch.randn(4, 3)})
    assert out.pheno_loss > 0 and torch.isfinite(out.loss)
    head = st.model.phenotype_learner[0].weight
    before = head.detach().clone()
    st.manual_step(out, [torch.optim.Adam(p, lr=1e-2) for p in st.parameter_groups()])
    assert not torch.equal(before, head)
    pred = st.predict(x)
    assert pred["embedding"].shape == (4, 8) and pred["pheno_pred"].shape == (4, 3)


def test_cevae_noise_pastes_squares() -> None:
    torch.manual_seed(0)
    st = station("custom_ultra_cevae")
    x = torch.rand(3, 1, 16, 16)
    noisy = st.model.square_noise(x)
    assert noisy.shape == x.shape and all((noisy[b] != x[b]).any() for b in range(3))


def test_ultra_factor_vae_plan_includes_the_head() -> None:
    groups = station("custom_ultra_factor_vae").optimiser_groups()
    assert groups[0].module_paths == ("model.encoder", "model.decoder", "model.phenotype_learner")
    assert groups[0].loss_key == "autoencoder_total_loss"


def test_bad_settings_fail_clearly() -> None:
    with pytest.raises(ConfigError, match="anti_confounders_strategy=1 is not supported.*valid: 0"):
        station("custom_ultra_vae", anti_confounders_strategy=1)
    with pytest.raises(ConfigError, match="n_phenotypes=0 must be ≥ 1 .*fetch_phenotypes"):
        PythaeStation.from_options(
            "custom_ultra_vae",
            (16, 16),
            1,
            False,
            8,
            {"n_features": 4, "models": {"ultra_vae": {"learn_phenotypes": True}}},
        )


def _fixed_vae(recon_value: float, kld: list[float]):
    def vae(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return torch.full_like(x, recon_value), torch.zeros(x.shape[0], 8), torch.tensor(kld)

    return vae


def test_ultra_vae_loss_terms_by_hand() -> None:
    """loss = mean(Σ|x̂−x| + KLD) + λ·MSE(head(z), phenotypes); x = 0, x̂ = 0.5 on 16×16 → recon 128."""
    st = station("custom_ultra_vae")
    st.model._vae = _fixed_vae(0.5, [1.0, 3.0])
    phenotypes = torch.randn(2, 3)
    out = st.model({"data": torch.zeros(2, 1, 16, 16), "phenotypes": phenotypes})
    pheno = torch.nn.functional.mse_loss(st.model.phenotype_learner(torch.zeros(2, 8)), phenotypes)
    assert torch.allclose(out.recon_loss, torch.tensor(128.0)) and torch.allclose(out.reg_loss, torch.tensor(2.0))
    assert torch.allclose(out.loss, 130.0 + 2.0 * pheno)


def test_ultra_cevae_loss_terms_by_hand() -> None:
    """per sample: vae_factor·(KLD + recon_factor·recon) + ce_factor·recon_ce, with factors 2, 3, 0.5."""
    st = station("custom_ultra_cevae", vae_factor=2.0, recon_factor=3.0, ce_factor=0.5, learn_phenotypes=False)
    st.model._vae = _fixed_vae(0.5, [1.0, 1.0])
    st.model.square_noise = lambda x: x
    out = st.model({"data": torch.zeros(2, 1, 16, 16)})
    assert torch.allclose(out.recon_loss_ce, torch.tensor(128.0))
    assert torch.allclose(out.loss, torch.tensor(2.0 * (1.0 + 3.0 * 128.0) + 0.5 * 128.0))
