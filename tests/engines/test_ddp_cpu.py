"""Two-process DDP on CPU (gloo): train, resume and test through the executor, against a single-process test.

The executor runs as a subprocess: Lightning's "ddp" relaunches ``sys.argv`` for rank 1, so the run must start
from the script. The test fold of 11 demo patients holds 3 series, so 2 ranks get an uneven share (2 + 1) and any padding
duplicate would show as an extra metrics row.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from Engineering.data.demo import write_demo_dataset
from Engineering.engines.runner import main
from tests.demo_args import demo_run_args

FRAMES, SIZE, N_TEST = 6, 32, 3


def _args(root: Path) -> list[str]:
    # n_train_batches 0.25: the "at least one batch" rule is checked per rank (a DDP shard of the training split)
    common = demo_run_args(root / "demo_data", root / "res", FRAMES, SIZE)
    common[common.index("--n_train_batches") + 1] = "0.25"
    return common + ["--n_save_recon_subs", "3", "--modelID", "-1", "--trainID", "ddp"]


def _executor(repo_root: Path, args: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(repo_root)}
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "MASTER_PORT"):
        env.pop(key, None)
    proc = subprocess.run(
        [sys.executable, "Executors/main_recon.py", *args],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def _h5(path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


@pytest.mark.slow
def test_ddp_two_cpu_processes_train_resume_test_like_one(tmp_path, monkeypatch, repo_root):
    write_demo_dataset(tmp_path / "demo_data", n_patients=11, frames=FRAMES, size=SIZE, n_folds=2, seed=3)
    ddp = ["--ndevices", "2", "--training_strategy", "ddp"]
    _executor(repo_root, _args(tmp_path) + ddp + ["--num_epochs", "1", "--run_mode", "1"])
    # resume to a second epoch, then test the best checkpoint on both ranks (run_mode 4)
    _executor(repo_root, _args(tmp_path) + ddp + ["--num_epochs", "2", "--run_mode", "4", "--resume"])
    (run_dir,) = (tmp_path / "res").iterdir()
    ckpts = {p.name for p in (run_dir / "Checkpoints").iterdir()}
    assert "last.ckpt" in ckpts and any(n.startswith("epoch=") for n in ckpts)
    log_text = (run_dir / "CaptainsLog.log").read_text()
    assert log_text.count("NEW MISSION") == 2  # rank 0 only, once per invocation
    assert "resuming from" in log_text and (run_dir / "resolved_config.yaml").is_file()

    # the same checkpoint in one process
    monkeypatch.chdir(repo_root)
    single = _args(tmp_path) + ["--run_mode", "2", "--resume", "--load_best", "--output_suffix", "single"]
    assert main("recon", single) == 0

    ddp_out, one_out = run_dir / "Output", run_dir / "Output_single"
    files = sorted(p.name for p in ddp_out.iterdir() if p.is_file())
    assert [f for f in files if f.endswith((".h5", ".csv", ".pkl")) or f.startswith(".")] == [
        "emb.h5",
        "metrics.csv",
        "metrics.pkl",
        "recon.h5",
    ]  # each written once by rank 0, no per-rank shards or leftover temporary files
    for name in ("emb.h5", "recon.h5"):
        got, want = _h5(ddp_out / name), _h5(one_out / name)
        assert sorted(got) == sorted(want) and len(want) == N_TEST
        for key, value in want.items():
            assert not np.isnan(got[key]).any()
            np.testing.assert_allclose(got[key], value, rtol=0, atol=1e-6)
    got_rows, want_rows = pd.read_csv(ddp_out / "metrics.csv"), pd.read_csv(one_out / "metrics.csv")
    assert len(got_rows) == len(want_rows) == N_TEST * FRAMES  # no padding duplicates
    order = ["SubID", "FieldID", "InstanceID", "Acq", "Slice"]
    pd.testing.assert_frame_equal(
        got_rows.sort_values(order).reset_index(drop=True), want_rows.sort_values(order).reset_index(drop=True)
    )
