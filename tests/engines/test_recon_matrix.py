"""Every --pythae_model × {2-D, 3-D} × {convnet, resnet} through the ReconEngine: one manual step (weights change),
infer, and the real test stage writing emb.h5.

Combinations the drive does not support are checked for their ConfigError instead of being skipped. The full
matrix is marked slow; a representative subset (vae, factor_vae, vqvae, rhvae in 2-D convnet) always runs.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader

from Engineering.configuration.sections import EvalOptions
from Engineering.errors import ConfigError
from Engineering.outputs.collector import TestOutputs
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


def _test_stage_writes_emb_h5(engine, batch: dict, out: Path) -> dict[str, tuple]:
    """Run Lightning's test loop on one batch with the engine's real output writer; return emb.h5's shapes."""
    engine.test_outputs = TestOutputs(output_dir=out, save_recon=False, evaluation=EvalOptions(n_calc_processes=0))
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.test(engine, dataloaders=DataLoader([batch], batch_size=None), verbose=False)
    shapes: dict[str, tuple] = {}
    with h5py.File(out / "emb.h5", "r") as f:
        f.visititems(lambda k, o: shapes.__setitem__(k, o.shape) if isinstance(o, h5py.Dataset) else None)
    return shapes


@pytest.mark.parametrize(("name", "dim", "net"), _cases())
def test_model_dim_net(name: str, dim: str, net: str, tmp_path: Path) -> None:
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
    shapes = _test_stage_writes_emb_h5(engine, batch, tmp_path)
    assert sorted(shapes) == sorted(batch["key"]) and set(shapes.values()) == {(1, 1, 1, L)}
