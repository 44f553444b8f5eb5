"""Run-control options end to end on the Identity model: tuner (--auto_bs, --auto_lr), LR decay, early stopping,
profiler and barebones dev runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from Engineering.data.demo import write_demo_dataset
from Engineering.engines.runner import Runner, main
from tests.demo_args import demo_run_args

FRAMES, SIZE = 4, 16


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rc")
    write_demo_dataset(root / "demo_data", n_patients=10, frames=FRAMES, size=SIZE, n_folds=2, seed=9)
    return root


def _args(root: Path, name: str, *extra: str) -> list[str]:
    return demo_run_args(root / "demo_data", root / name, FRAMES, SIZE) + ["--modelID", "-1", "--auto_optim", *extra]


@pytest.mark.slow
def test_auto_bs_and_auto_lr_run_once_with_the_datamodule(data, monkeypatch, repo_root):
    monkeypatch.chdir(repo_root)
    runner = Runner("recon", _args(data, "tune", "--auto_bs", "--auto_lr", "--run_mode", "1", "--num_epochs", "1"))
    calls = {"scale": 0, "lr": 0}
    from lightning.pytorch.tuner import Tuner

    real_scale, real_lr = Tuner.scale_batch_size, Tuner.lr_find

    def scale(self, *a, **kw):
        calls["scale"] += 1
        assert kw.get("datamodule") is not None
        return real_scale(self, *a, **{**kw, "max_trials": 2})

    def lr_find(self, *a, **kw):
        calls["lr"] += 1
        assert kw.get("datamodule") is not None
        return real_lr(self, *a, **{**kw, "num_training": 8})

    monkeypatch.setattr(Tuner, "scale_batch_size", scale)
    monkeypatch.setattr(Tuner, "lr_find", lr_find)
    runner.engage()
    assert calls == {"scale": 1, "lr": 1}
    assert runner.cfg.run.batch_size >= 2
    assert (runner.paths.run_dir / "auto_lr.csv").is_file()


@pytest.mark.slow
def test_step_lr_decay_and_early_stopping(data, monkeypatch, repo_root):
    monkeypatch.chdir(repo_root)
    args = _args(
        data,
        "decay",
        "--lr_decay_type",
        "1",
        "--training§LRDecay§type1§decay_nepoch",
        "1",
        "--training§LRDecay§type1§decay_rate",
        "0.5",
        "--lr",
        "0.01",
        "--num_epochs",
        "3",
        "--run_mode",
        "1",
        "--early_stopping_patience",
        "5",
    )
    assert main("recon", args) == 0
    (ckpt,) = (data / "decay").glob("*/Checkpoints/last.ckpt")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert state["lr_schedulers"][0]["_last_lr"][0] == pytest.approx(0.01 * 0.5**3)
    assert any("EarlyStopping" in k for k in state["callbacks"])


@pytest.mark.slow
def test_plateau_decay_profiler_and_barebones_dev_run(data, monkeypatch, repo_root):
    monkeypatch.chdir(repo_root)
    assert (
        main(
            "recon",
            _args(
                data, "plateau", "--lr_decay_type", "2", "--num_epochs", "1", "--run_mode", "1", "--profiler", "simple"
            ),
        )
        == 0
    )
    assert main("recon", _args(data, "bare", "--dev_run", "-1", "--run_mode", "1")) == 0
    assert not list((data / "bare").glob("*/Checkpoints/*.ckpt"))
