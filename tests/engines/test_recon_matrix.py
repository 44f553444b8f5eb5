"""Every --pythae_model × {2-D, 3-D} × {convnet, resnet} through the ReconEngine (fast_dev_run, manual step, infer).

Combinations the drive does not support are checked for their ConfigError instead of being skipped. The full
matrix is marked slow; a representative subset (vae, factor_vae, vqvae, rhvae in 2-D convnet) always runs.
"""

from __future__ import annotations

import pytest
import torch

from Engineering.errors import ConfigError
from Engineering.warp_drives.pythae.registry import available_models
from tests.engines.test_recon_engine import B, L, changed_groups, custom_options, make_batch, make_engine

FAST_SUBSET = {("vae", "2d", "convnet"), ("factor_vae", "2d", "convnet"), ("vqvae", "2d", "convnet"),
               ("rhvae", "2d", "convnet")}  # fmt: skip
#: expected ConfigError messages of unsupported combinations (name, dim, net) → pattern
UNSUPPORTED = {("vqvae", "3d", "resnet"): "vqvae with nn='resnet' is 2-D only"}
COMPLEX_NETS = {"convnet": "cvconvnet", "resnet": "cvresnet"}


def _cases() -> list:
    cases = []
    for name in available_models():
        for dim in ("2d", "3d"):
            for net in ("convnet", "resnet"):
                marks = () if (name, dim, net) in FAST_SUBSET else (pytest.mark.slow,)
                cases.append(pytest.param(name, dim, net, marks=marks, id=f"{name}-{dim}-{net}"))
    return cases


def _engine_options(name: str, net: str) -> tuple[dict, dict]:
    opts = custom_options(name)
    hp = {**opts["hp"], "pythae": {"nn": net, **opts["hp"].get("pythae", {})}}
    if "complex" in name:
        hp["pythae"]["nn"] = COMPLEX_NETS[net]
    return hp, opts["batch"]


@pytest.mark.parametrize(("name", "dim", "net"), _cases())
def test_model_dim_net(name: str, dim: str, net: str) -> None:
    torch.manual_seed(0)
    hp, extra = _engine_options(name, net)
    expected = UNSUPPORTED.get((name, dim, net))
    if "complex" in name and net == "resnet":
        expected = "complex ResNets are not supported"
    if expected is not None:
        with pytest.raises(ConfigError, match=expected):
            make_engine(name, dim, **hp)
        return
    engine = make_engine(name, dim, **hp)
    batch = make_batch(dim, **extra)
    changed = changed_groups(engine, batch)
    assert next(iter(changed.values())), changed
    if engine.net.trainer_mode in ("base", "adversarial"):
        assert all(changed.values()), changed
    result = engine.eval().infer(batch)
    assert result.embedding.shape == (B, L)
    assert result.recon.shape == batch["inp"]["data"].shape
