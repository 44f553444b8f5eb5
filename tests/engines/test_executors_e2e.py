"""End-to-end runs of the executors on a tiny synthetic UK Biobank-layout file (CPU, a few batches)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from Engineering.data.demo import write_demo_dataset
from Engineering.engines.runner import main
from Engineering.outputs import check_emb_h5
from tests.demo_args import demo_run_args

FRAMES, SIZE = 6, 32


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    write_demo_dataset(root / "demo_data", n_patients=8, frames=FRAMES, size=SIZE, n_folds=2, seed=3)
    return root


def _common(root: Path, results: str) -> list[str]:
    return demo_run_args(root / "demo_data", root / results, FRAMES, SIZE) + ["--n_save_recon_subs", "1"]


def _datasets(path: Path) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: out.__setitem__(name, (obj.shape, obj.dtype)) if isinstance(obj, h5py.Dataset) else None
        )
    return out


def _run_dir(results: Path) -> Path:
    (run_dir,) = [p for p in results.iterdir() if p.is_dir()]
    return run_dir


@pytest.mark.slow
def test_recon_identity_trains_checkpoints_resumes_and_tests(demo, monkeypatch, repo_root):
    monkeypatch.chdir(repo_root)
    args = _common(demo, "res_recon") + ["--modelID", "-1", "--num_epochs", "1", "--trainID", "smoke"]
    assert main("recon", args) == 0
    run_dir = _run_dir(demo / "res_recon")
    assert run_dir.name == "demo_smokefold0_prec32_pythaemodel-factor_vae"
    ckpts = sorted(p.name for p in (run_dir / "Checkpoints").iterdir())
    assert "last.ckpt" in ckpts and any(n.startswith("epoch=0-step=") for n in ckpts)
    emb = _datasets(run_dir / "Output" / "emb.h5")
    assert emb and all(shape == (1, 1, 1, 2) and dtype == np.float64 for shape, dtype in emb.values())
    assert all(len(k.split("/")) == 4 and k.endswith("primary_LAX_4Ch_transverse_0") for k in emb)
    assert (run_dir / "resolved_config.yaml").is_file() and (run_dir / "CaptainsLog.log").is_file()

    # resume: continue to 2 epochs in total, from last.ckpt
    assert main("recon", args[:-4] + ["--num_epochs", "2", "--trainID", "smoke", "--resume", "--run_mode", "1"]) == 0
    assert any(n.startswith("epoch=1-step=") for n in (p.name for p in (run_dir / "Checkpoints").iterdir()))

    # inference over the whole file into Output_fullDS
    test_args = args + [
        "--resume",
        "--load_best",
        "--run_mode",
        "2",
        "--output_suffix",
        "fullDS",
        "--json§foldCSV",
        "0",
    ]
    assert main("recon", test_args) == 0
    full = _datasets(run_dir / "Output_fullDS" / "emb.h5")
    assert set(emb) < set(full)
    metrics = pd.read_csv(run_dir / "Output_fullDS" / "metrics.csv")
    assert {"SSIM", "PSNR", "SubID", "FieldID", "InstanceID", "Acq"} <= set(metrics.columns)


@pytest.mark.slow
def test_diffae_tiny_3d_end_to_end(demo, monkeypatch, repo_root):
    monkeypatch.chdir(repo_root)
    args = _common(demo, "res_diffae") + [
        "--num_epochs",
        "1",
        "--trainID",
        "tiny",
        "--model§latent_dim",
        "8",
        "--model§DiffAE§net_ch",
        "8",
        "--model§DiffAE§T_eval",
        "2",
        "--model§DiffAE§sample_every_batches",
        "1",
    ]
    assert main("diffae", args) == 0
    run_dir = _run_dir(demo / "res_diffae")
    assert run_dir.name == "demo_tinyfold0_prec32_DiffAE"
    emb = _datasets(run_dir / "Output" / "emb.h5")
    assert emb and all(shape == (1, 1, 1, 8) and dtype == np.float64 for shape, dtype in emb.values())
    recon = _datasets(run_dir / "Output" / "recon.h5")
    assert set(recon) == set(emb)
    assert all(shape == (1, 1, 1, FRAMES, SIZE, SIZE) for shape, _ in recon.values())
    with h5py.File(run_dir / "Output" / "recon.h5", "r") as f:
        values = f[next(iter(recon))][()]
    assert 0.0 <= values.min() and values.max() <= 1.0
    panels = sorted(p.name for p in (run_dir / "Output" / "panels").iterdir())
    assert panels == sorted(k.replace("/", "_") + ".png" for k in recon)
    metrics = pd.read_csv(run_dir / "Output" / "metrics.csv")
    assert len(metrics) == len(recon) * FRAMES and metrics["SSIM"].notna().all()

    # the best checkpoint over the whole file: emb.h5 holds exactly the series the shipped filters select
    full = args + ["--resume", "--load_best", "--run_mode", "2", "--output_suffix", "fullDS", "--json§foldCSV", "0",
                   "--test_emb_only"]  # fmt: skip
    assert main("diffae", full) == 0
    expected = write_demo_dataset(
        demo / "again", n_patients=8, frames=FRAMES, size=SIZE, n_folds=2, seed=3
    ).expected_keys
    assert check_emb_h5(run_dir / "Output_fullDS" / "emb.h5", expected_keys=expected, latent_dim=8) == []

    # latents are deterministic: a second inference with another batch size gives the same emb.h5
    again = args + [
        "--resume",
        "--run_mode",
        "2",
        "--output_suffix",
        "again",
        "--test_batch_size",
        "3",
        "--test_emb_only",
    ]
    assert main("diffae", again) == 0
    with h5py.File(run_dir / "Output" / "emb.h5", "r") as a, h5py.File(run_dir / "Output_again" / "emb.h5", "r") as b:
        for key in emb:
            np.testing.assert_allclose(a[key][()], b[key][()], rtol=0, atol=1e-6)
    assert not (run_dir / "Output_again" / "recon.h5").exists()


def test_bad_input_is_one_line_without_traceback(tmp_path, repo_root):
    cmd = [sys.executable, "Executors/main_recon.py", "--datajson_path", str(tmp_path / "missing.json")]
    proc = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("imlatent: error:") and "missing.json" in lines[-1]
    assert "Traceback" not in proc.stderr
