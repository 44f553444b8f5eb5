"""PythaeStation over every built-in registry model × {2-D, 3-D}: build, forward, predict, one optimiser step."""

from __future__ import annotations

import copy

import pytest
import torch

from Engineering.warp_drives.pythae.registry import PYTHAE_MODELS
from Engineering.warp_drives.pythae.station import PythaeStation

SHAPES = {"2d": (16, 16), "3d": (16, 16, 16)}
B, L = 4, 8
#: keep the sampling-heavy models tiny so every test stays well under a second
FAST = {
    "iwae": {"number_samples": 2},
    "miwae": {"number_samples": 2, "number_gradient_estimates": 2},
    "piwae": {"number_samples": 2, "number_gradient_estimates": 2},
    "ciwae": {"number_samples": 2},
    "vamp": {"number_components": 4},
    "vqvae": {"num_embeddings": 16},
    "msssim_vae": {"window_size": 3},
}


def make_station(name: str, dim: str, nn: str = "convnet", **pythae: object) -> PythaeStation:
    shape = SHAPES[dim]
    yaml_pythae = {"n_features": 4, "nn": nn, "reconstruction_loss": "mse", "models": FAST, **pythae}
    return PythaeStation.from_options(name, shape, 1, dim == "3d", L, yaml_pythae)


def batch(dim: str) -> torch.Tensor:
    return torch.rand(B, 1, *SHAPES[dim])


def snapshot(params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


@pytest.mark.parametrize("dim", SHAPES)
@pytest.mark.parametrize("name", list(PYTHAE_MODELS))
def test_station_trains_and_predicts(name: str, dim: str) -> None:
    torch.manual_seed(0)
    station = make_station(name, dim)
    x = batch(dim)
    station.train()
    out = station(x, epoch=0, dataset_size=64)
    assert torch.isfinite(out.loss)
    assert out.recon_x.shape[1:] == x.shape[1:]

    groups = station.optimiser_groups()
    params = station.parameter_groups()
    assert len(groups) == len(params) and all(params)
    optimisers = [torch.optim.Adam(p, lr=1e-3) for p in params]
    before = [snapshot(p) for p in params]
    active = [loss is not None for loss in station.group_losses(out)]
    station.manual_step(out, optimisers)
    for group, was, now, on in zip(groups, before, params, active, strict=True):
        changed = any(not torch.equal(a, b) for a, b in zip(was, now, strict=True))
        assert changed == on, f"{name}: group {group.name} active={on} changed={changed}"
    assert any(active)

    station.eval()
    with torch.inference_mode():
        assert torch.isfinite(station(x).loss)
        pred = station.predict(x)
    assert pred["embedding"].shape == (B, L)
    assert pred["recon_x"].shape == x.shape


@pytest.mark.parametrize("dim", SHAPES)
@pytest.mark.parametrize("name", ["vae", "factor_vae", "rae_l2", "vaegan", "svae"])
def test_resnet_family(name: str, dim: str) -> None:
    torch.manual_seed(0)
    station = make_station(name, dim, nn="resnet")
    x = batch(dim)
    assert torch.isfinite(station(x).loss)
    assert station.predict(x)["embedding"].shape == (B, L)


def test_vqvae_resnet_2d_embedding_is_flattened_map() -> None:
    station = make_station("vqvae", "2d", nn="resnet")
    assert station.predict(batch("2d"))["embedding"].shape == (B, L)  # 16×16 → a 1×1 map of L channels


def test_optimiser_plans() -> None:
    plans = {n: [g.name for g in make_station(n, "2d").optimiser_groups()] for n in ("vae", "aae", "rae_l2", "vaegan")}
    assert plans == {
        "vae": ["model"],
        "aae": ["autoencoder", "discriminator"],
        "rae_l2": ["encoder", "decoder"],
        "vaegan": ["encoder", "decoder", "discriminator"],
    }
    fvae = make_station("factor_vae", "2d")
    assert [g.monitor for g in fvae.optimiser_groups()] == ["ae_val_loss", "discriminator_val_loss"]
    assert fvae.optimiser_groups()[0].module_paths == ("model.encoder", "model.decoder")
    assert not fvae.supports_automatic_optimisation and make_station("vae", "2d").supports_automatic_optimisation
    n_params = sum(len(p) for p in fvae.parameter_groups())
    assert n_params == len(list(fvae.parameters()))


def test_base_model_is_stepped_and_accumulates() -> None:
    """Base models are stepped (unlike the original); with step=False the gradients accumulate and nothing moves."""
    torch.manual_seed(0)
    station = make_station("vae", "2d")
    opt = torch.optim.SGD(station.parameters(), lr=0.1)
    before = snapshot(list(station.parameters()))
    station.manual_step(station(batch("2d")), opt, step=False)
    assert all(torch.equal(a, b) for a, b in zip(before, station.parameters(), strict=True))
    grad_one = station.model.encoder.heads.embedding.weight.grad.clone()
    station.manual_step(station(batch("2d")), [opt], step=True)
    assert all(p.grad is None or not p.grad.any() for p in station.parameters())
    assert not torch.equal(before[0], next(station.parameters()))
    assert grad_one.abs().sum() > 0


def test_adversarial_step_keeps_discriminator_quirk() -> None:
    """As in the original: no zeroing between the two backward calls, unlike pythae's trainer."""
    torch.manual_seed(0)
    faithful = make_station("factor_vae", "2d")
    pythae_like = copy.deepcopy(faithful)
    x = batch("2d")
    grads = []
    for station, zero in ((faithful, False), (pythae_like, True)):
        torch.manual_seed(1)
        out = station(x)
        opts = [torch.optim.SGD(p, lr=0.1) for p in station.parameter_groups()]
        station.manual_step(out, opts, step=False, zero_between_backwards=zero)
        grads.append([p.grad.clone() for p in station.model.discriminator.parameters()])
    assert any(not torch.allclose(a, b) for a, b in zip(*grads, strict=True))


def test_manual_step_checks_optimiser_count_and_uses_hooks() -> None:
    station = make_station("aae", "2d")
    out = station(batch("2d"))
    with pytest.raises(Exception, match="aae needs 2 optimiser\\(s\\) \\(autoencoder, discriminator\\), got 1"):
        station.manual_step(out, torch.optim.SGD(station.parameters(), lr=0.1))
    calls: list[str] = []

    def backward(loss: torch.Tensor, retain_graph: bool) -> None:
        calls.append(f"backward retain={retain_graph}")
        loss.backward(retain_graph=retain_graph)

    opts = [torch.optim.SGD(p, lr=0.1) for p in station.parameter_groups()]
    station.manual_step(out, opts, backward=backward, clip=lambda o: calls.append("clip"))
    assert calls == ["backward retain=True", "backward retain=False", "clip", "clip"]


def test_loss_terms_and_epoch_kwarg_reach_the_model() -> None:
    """``epoch`` reaches DisentangledBetaVAE (capacity C warms up from 0)."""
    station = make_station("disentangled_beta_vae", "2d").eval()
    x = batch("2d")
    losses = []
    for epoch in (0, None):
        torch.manual_seed(3)
        losses.append(float(station(x, epoch=epoch).loss))
    assert losses[0] != losses[1]
    assert set(PythaeStation.loss_terms(station(x))) == {"loss", "recon_loss", "reg_loss"}


def test_bce_loss_runs() -> None:
    station = make_station("beta_vae", "2d", reconstruction_loss="bce")
    assert station.resolved.config.reconstruction_loss == "bce"
    assert torch.isfinite(station(batch("2d")).loss)


def test_state_dict_keys_and_resolved_config() -> None:
    station = make_station("factor_vae", "3d")
    keys = list(station.state_dict())
    assert "model.encoder.layers.0.0.weight" in keys and "model.decoder.layers.0.0.weight" in keys
    assert any(k.startswith("model.discriminator.") for k in keys)
    record = station.resolved_config()
    assert record["model_config"]["input_dim"] == [1, 16, 16, 16]
    assert record["trainer_mode"] == "adversarial"
    rebuilt = PythaeStation.from_options(**station.options)
    rebuilt.load_state_dict(station.state_dict())
