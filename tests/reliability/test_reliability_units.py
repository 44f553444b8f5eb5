"""Atomic checkpoint IO, corrupt-checkpoint fallback, RNG capture, NaN guard and atomic result files."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from Engineering.configuration.run_config import RunConfig
from Engineering.engines.reliability import (
    AtomicCheckpointIO,
    NonFiniteLossError,
    NonFiniteLossGuard,
    capture_rng_state,
    restore_rng_state,
)
from Engineering.errors import CheckpointError, ConfigError
from Engineering.hub.checkpoints import checkpoint_problem, select_checkpoint


def _ckpt(path: Path, value: float = 1.0) -> Path:
    torch.save({"state_dict": {"w": torch.tensor([value])}, "epoch": 0}, path)
    return path


def test_atomic_io_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(2)}}, tmp_path / "c" / "last.ckpt")
    io.save_checkpoint({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "c" / "last.ckpt")
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["last.ckpt"]
    assert torch.load(tmp_path / "c" / "last.ckpt", weights_only=True)["state_dict"]["w"].sum() == 0


def test_atomic_io_crash_keeps_previous(tmp_path: Path, monkeypatch) -> None:
    path = _ckpt(tmp_path / "last.ckpt", 3.0)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        AtomicCheckpointIO().save_checkpoint({"state_dict": {}}, path)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
    assert checkpoint_problem(path) is None


@pytest.mark.parametrize(
    "content, reason",
    [(b"", "empty"), (b"garbage" * 10, "not a readable"), (None, "truncated"), ("nodict", "no 'state_dict'")],
)
def test_checkpoint_problem(tmp_path: Path, content, reason) -> None:
    path = tmp_path / "x.ckpt"
    if content is None:
        data = _ckpt(path).read_bytes()
        path.write_bytes(data[: len(data) // 2])
        reason = "not a readable"
    elif content == "nodict":
        torch.save({"weights": 1}, path)
    else:
        path.write_bytes(content)
    assert reason in checkpoint_problem(path)


def test_resume_falls_back_to_previous_good_checkpoint(tmp_path: Path, caplog) -> None:
    ck = tmp_path / "run" / "Checkpoints"
    ck.mkdir(parents=True)
    _ckpt(ck / "last.ckpt")
    _ckpt(ck / "epoch=3-step=8.ckpt")
    (ck / "last-v1.ckpt").write_bytes(_ckpt(ck / "tmp.bin").read_bytes()[:100])
    (ck / "tmp.bin").unlink()
    with caplog.at_level(logging.WARNING, logger="imlatent"):
        assert select_checkpoint(tmp_path / "run", load_best=False).name == "last.ckpt"
    assert "last-v1.ckpt is corrupt" in caplog.text
    (ck / "last.ckpt").write_bytes(b"")
    assert select_checkpoint(tmp_path / "run", load_best=False).name == "epoch=3-step=8.ckpt"
    (ck / "epoch=3-step=8.ckpt").write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"no usable checkpoint in .*last-v1\.ckpt: .*last\.ckpt: empty"):
        select_checkpoint(tmp_path / "run", load_best=True)


def test_rng_state_round_trip_is_weights_only_safe(tmp_path: Path) -> None:
    class Engine:
        _generator = torch.Generator().manual_seed(5)

    engine = Engine()
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    state = capture_rng_state(engine)
    torch.save(state, tmp_path / "s.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(2, generator=engine._generator))
    restore_rng_state(torch.load(tmp_path / "s.pt", weights_only=True), engine)
    got = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(2, generator=engine._generator))
    torch.testing.assert_close(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert got[2] == expected[2]
    torch.testing.assert_close(got[3], expected[3])


def test_nan_policy_option() -> None:
    def policy(yaml: dict) -> str:
        return RunConfig.build("recon", {}, yaml).training.nan_policy

    assert policy({}) == "stop" and policy({"training": {"nan_policy": "Skip"}}) == "skip"
    with pytest.raises(ConfigError, match="key training.nan_policy = 'ignore': expected one of stop, skip"):
        policy({"training": {"nan_policy": "ignore"}})


class _Trainer:
    current_epoch, global_step, checkpoint_callback, default_root_dir = 2, 17, None, "/runs/x"


def test_nan_guard_stop_names_the_step() -> None:
    guard = NonFiniteLossGuard("stop")
    guard.on_before_backward(_Trainer(), None, torch.tensor(1.0))
    with pytest.raises(NonFiniteLossError, match=r"^training loss is NaN at epoch 2, global step 17; stopped"):
        guard.on_before_backward(_Trainer(), None, torch.tensor(float("nan")))


def test_nan_guard_skip_drops_the_update() -> None:
    guard = NonFiniteLossGuard("skip")
    w = torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([w], lr=1.0)
    loss = (w * float("inf")).sum()
    guard.on_before_backward(_Trainer(), None, loss)
    loss.backward()
    guard.on_before_optimizer_step(_Trainer(), None, opt)
    opt.step()
    assert guard.skipped == 1 and torch.equal(w.detach(), torch.ones(2))


def test_interrupted_result_write_leaves_previous_file(tmp_path: Path, monkeypatch) -> None:
    """A crash while emb.h5 is written leaves the previous complete file (or none) and no visible partial file."""
    import h5py

    from Engineering.outputs import write_results_h5

    key = "1000011/20208/2_0/primary_LAX_4Ch_transverse_0"
    write_results_h5(tmp_path / "emb.h5", {key: np.ones((1, 1, 1, 2))})

    def crash(self, *args, **kwargs):
        raise KeyboardInterrupt  # what SIGINT/SIGTERM turn into mid-write

    monkeypatch.setattr(h5py.Group, "create_dataset", crash)
    with pytest.raises(KeyboardInterrupt):
        write_results_h5(tmp_path / "emb.h5", {key: np.zeros((1, 1, 1, 2))})
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["emb.h5"]
    with h5py.File(tmp_path / "emb.h5", "r") as f:
        assert f[key][()].sum() == 2
