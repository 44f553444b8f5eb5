"""Perceptual losses (--lossID -1, -2): weights from the user's files only, frozen, eval mode, outside state dicts."""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest
import torch
from torch import nn

from Engineering.errors import ConfigError
from Engineering.science.losses.perceptual import LPIPS_TRUNKS, LPIPSLoss, PerceptualLoss, UNetFeatures


def _weights_file(tmp_path, model: str, levels: int, drop: str | None = None):
    torch.manual_seed(0)
    net = UNetFeatures(model, levels)
    state = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v for k, v in net.state_dict().items()}
    state["Up2.conv.0.weight"] = torch.zeros(1)  # decoder keys of the full UNet are ignored
    if drop:
        state.pop(drop)
    path = tmp_path / "ploss.pth"
    torch.save({"state_dict": state, "epoch": 3}, path)
    return path, state


def test_inhouse_3d_loads_the_users_weights_frozen_in_eval_outside_the_state_dict(tmp_path):
    path, state = _weights_file(tmp_path, "med1ch3D.UNetMSSDS6", 3)
    loss = PerceptualLoss(n_level=3, n_dim=3, weights_path=str(path))
    holder = nn.Sequential(loss)
    holder.train()
    net = loss.__dict__["_frozen"]
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    assert set(holder.state_dict()) == set()  # nothing of the perceptual network is saved with the model
    assert all(torch.equal(net.state_dict()[k], state[k]) for k in net.state_dict())
    running = net.Conv1.conv[1].running_mean.clone()
    x = torch.rand(2, 1, 8, 16, 16)
    y = (x + 0.1 * torch.rand_like(x)).requires_grad_(True)
    value = loss(y, x)
    value.backward()
    assert value > 0 and y.grad is not None and y.grad.abs().sum() > 0
    assert loss(x, x) == 0
    assert torch.equal(net.Conv1.conv[1].running_mean, running)  # BatchNorm statistics never drift


def test_inhouse_2d_and_levels(tmp_path):
    path, _ = _weights_file(tmp_path, "med1ch2D.UNet", 2)
    loss = PerceptualLoss("med1ch2D.UNet", n_level=2, n_dim=2, weights_path=str(path))
    x = torch.rand(3, 2, 16, 16)  # two channels: each through the 1-channel network
    assert loss(x, x.flip(-1)) > 0
    with pytest.raises(ConfigError, match="too small for level 2"):
        loss(torch.rand(1, 1, 1, 16), torch.rand(1, 1, 1, 16))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"weights_path": "/nonexistent/ploss.pth"},
            r"--lossID -1 needs the weights .* /nonexistent/ploss.pth does not exist; give the file with --ploss_weights PATH",
        ),
        ({"loss_model": "x.vgg16.IMAGENET1K_V1"}, "not available for --lossID -1"),
        ({"n_dim": 2}, "is 3-D but the data are 2-D"),
        ({"loss_type": "MSE"}, "--ploss_type 'MSE' is unknown"),
        ({"n_level": 7}, "expected 1..5 or inf"),
    ],
)
def test_bad_settings_are_one_line(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        PerceptualLoss(**kwargs)


def test_weights_without_the_expected_keys_are_refused(tmp_path):
    path, _ = _weights_file(tmp_path, "med1ch3D.UNetMSSDS6", 2, drop="Conv2.conv.3.weight")
    with pytest.raises(ConfigError, match=r"lack 'Conv2.conv.3.weight'"):
        PerceptualLoss(n_level=2, weights_path=str(path))


# ------------------------------------------------------------------ LPIPS


def _alexnet_features() -> nn.Sequential:
    """torchvision's AlexNet ``features`` (same layer indices, hence the same checkpoint keys)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
    )  # fmt: skip


@pytest.fixture
def lpips_offline(tmp_path, monkeypatch):
    if importlib.util.find_spec("lpips") is None:  # `make venv` installs it (without its torchvision dependency)
        pytest.skip("the lpips package is not installed (pip install --no-deps lpips)")
    """A temporary TORCH_HOME holding an AlexNet checkpoint in torchvision's layout, and the lpips package imported
    against a stand-in for torchvision's model constructors (the PyPI torchvision build cannot load next to a CPU
    torch; lpips only takes ``.features`` from it)."""
    models = types.ModuleType("torchvision.models")
    models.alexnet = lambda pretrained=False, **_: types.SimpleNamespace(features=_alexnet_features())  # type: ignore[attr-defined]
    vision = types.ModuleType("torchvision")
    vision.models = models  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchvision", vision)
    monkeypatch.setitem(sys.modules, "torchvision.models", models)
    for name in [m for m in sys.modules if m == "lpips" or m.startswith("lpips.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.manual_seed(1)
    checkpoint = {f"features.{k}": v for k, v in _alexnet_features().state_dict().items()}
    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(checkpoint, tmp_path / "torch" / "hub" / "checkpoints" / LPIPS_TRUNKS["alex"])
    return checkpoint


def test_lpips_trunk_from_the_torch_cache_lin_layers_from_the_package(lpips_offline):
    import lpips

    loss = LPIPSLoss("alex", n_dim=3)
    model = loss.__dict__["_frozen"]
    trunk = model.net.state_dict()
    assert all(torch.equal(trunk[k], lpips_offline["features." + k.split(".", 1)[1]]) for k in trunk)
    shipped = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False).state_dict()
    assert torch.equal(model.state_dict()["lin0.model.1.weight"], shipped["lin0.model.1.weight"])
    assert not model.training and set(nn.Sequential(loss).state_dict()) == set()
    x = torch.rand(2, 1, 3, 64, 64)  # 3-D grey: slice by slice, repeated to RGB
    y = (x.flip(-1)).requires_grad_(True)
    value = loss(y, x)
    value.backward()
    assert value > 0 and y.grad.abs().sum() > 0 and loss(x, x) == 0


def test_lpips_without_the_cached_trunk_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match=r"needs torchvision's alexnet-owt-7be5be79.pth in the torch cache: .*empty"):
        LPIPSLoss("alex")


def test_lpips_import_failure_is_one_line(lpips_offline, monkeypatch):
    monkeypatch.setitem(sys.modules, "lpips", None)  # as when torchvision does not match torch
    with pytest.raises(ConfigError, match=r"--lossID -2 needs the lpips package .*importing it failed"):
        LPIPSLoss("alex")


# ------------------------------------------------------------------ wiring into the recon engine


def test_identity_model_uses_the_perceptual_loss_outside_its_checkpoint(tmp_path):
    from Engineering.engines.recon import ReconEngine

    path, _ = _weights_file(tmp_path, "med1ch3D.UNetMSSDS6", 2)
    hp = {"modelID": -1, "lossID": -1, "ploss_level": 2, "ploss_weights": str(path), "is3D": 1, "lr": 1e-3}
    hp.update(input_shape="8,16,16", batch_size=2, effective_batch_size=2)
    engine = ReconEngine(hp, {"model": {"latent_dim": 4}})
    assert isinstance(engine.loss_fn, PerceptualLoss)
    assert set(engine.state_dict()) == {"net.scale", "net.shift"}


def test_pythae_custom_reconstruction_loss_is_the_perceptual_loss(tmp_path):
    from tests.engines.test_recon_engine import fit_one_step, make_batch, make_engine

    path, _ = _weights_file(tmp_path, "med1ch2D.UNet", 2)
    ploss = {"lossID": -1, "ploss_model": "med1ch2D.UNet", "ploss_level": 2, "ploss_weights": str(path)}
    engine = make_engine("custom_factor_vae", pythae={"reconstruction_loss": "custom"}, **ploss)
    assert isinstance(engine.net.model.custom_recon_loss_func, PerceptualLoss)
    plain = make_engine("custom_factor_vae", pythae={"reconstruction_loss": "mse"})
    assert set(engine.state_dict()) == set(plain.state_dict())  # the frozen network is in no checkpoint
    fit_one_step(engine, make_batch())
    assert not engine.net.model.custom_recon_loss_func.__dict__["_frozen"].training
