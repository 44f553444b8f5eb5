"""A run killed with SIGKILL (or stopped by SIGTERM/SIGUSR1) resumes with --resume to the same weights."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import torch

from tests.reliability.conftest import common_args, finish, start_driver, wait_for

IDENTITY = ["--modelID", "-1", "--run_mode", "1", "--lr_decay_type", "1", "--training§LRDecay§type1§decay_nepoch", "1"]
TINY_DIFFAE = ["--model§latent_dim", "8", "--model§DiffAE§net_ch", "8", "--model§DiffAE§T_eval", "2", "--run_mode", "0"]


def _last(results: Path) -> dict:
    (run_dir,) = [p for p in results.iterdir() if p.is_dir() and p.name != "tb"]
    return torch.load(run_dir / "Checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def _assert_same_training_state(a: dict, b: dict) -> None:
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"])
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][key], b["state_dict"][key], rtol=0, atol=0, msg=key)
    for opt_a, opt_b in zip(a["optimizer_states"], b["optimizer_states"], strict=True):
        for pid, st in opt_a["state"].items():
            for name, value in st.items():
                torch.testing.assert_close(value, opt_b["state"][pid][name], rtol=0, atol=0)
    assert a["lr_schedulers"] == b["lr_schedulers"]


def _kill_and_resume(repo: Path, tmp_path: Path, script: str, args: list[str], epochs: int, kill_at: int) -> None:
    full, killed = tmp_path / "full", tmp_path / "killed"
    ref = start_driver(repo, script, common_args(tmp_path, full, _datadir()) + args + ["--num_epochs", str(epochs)])
    run = start_driver(repo, script, common_args(tmp_path, killed, _datadir()) + args + ["--num_epochs", str(epochs)],
                 sleep=0.15, marks=tmp_path / "marks")  # fmt: skip
    wait_for(tmp_path / "marks" / f"epoch{kill_at}.started", run)
    time.sleep(0.1)  # mid-epoch, possibly while last.ckpt is being written
    run.send_signal(signal.SIGKILL)
    assert finish(run)[0] == -signal.SIGKILL
    rc, err = finish(start_driver(repo, script, common_args(tmp_path, killed, _datadir()) + args
                             + ["--num_epochs", str(epochs), "--resume"]))  # fmt: skip
    assert rc == 0, err[-3000:]
    assert "taking over the lock left by a run that ended without releasing it" in err  # the killed run's lock
    rc, err = finish(ref)
    assert rc == 0, err[-3000:]
    _assert_same_training_state(_last(full), _last(killed))


_DATADIR: list[Path] = []


def _datadir() -> Path:
    return _DATADIR[0]


@pytest.fixture(autouse=True)
def _data(rel_demo):
    _DATADIR[:] = [rel_demo / "demo_data"]


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted_recon(repo_root, tmp_path):
    _kill_and_resume(repo_root, tmp_path, "recon", IDENTITY, epochs=4, kill_at=2)


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted_diffae(repo_root, tmp_path):
    _kill_and_resume(repo_root, tmp_path, "diffae", TINY_DIFFAE, epochs=3, kill_at=2)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_preemption_signal_saves_last_and_resumes(repo_root, tmp_path, sig):
    results = tmp_path / "res"
    args = common_args(tmp_path, results, _datadir()) + IDENTITY + ["--num_epochs", "3"]
    run = start_driver(repo_root, "recon", args, sleep=0.15, marks=tmp_path / "marks")
    wait_for(tmp_path / "marks" / "epoch1.started", run)
    run.send_signal(sig)
    rc, err = finish(run)
    assert rc == 0, err[-3000:]
    assert "received: saved" in err and "last.ckpt" in err
    assert "Traceback" not in err
    state = _last(results)
    assert state["epoch"] == 1 and state["state_dict"]  # stopped inside epoch 1, loadable with weights_only
    rc, err = finish(start_driver(repo_root, "recon", args + ["--resume"]))
    assert rc == 0, err[-3000:]
    assert _last(results)["epoch"] == 2
