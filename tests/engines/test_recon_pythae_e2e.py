"""End-to-end main_recon run with a pythae model (modelID 0) on a tiny synthetic file: train, test, emb.h5."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from Engineering.data.demo import write_demo_dataset
from Engineering.engines.runner import main

FRAMES, SIZE, L = 16, 16, 8


@pytest.mark.slow
def test_vae_trains_and_writes_embeddings(tmp_path: Path, monkeypatch, repo_root) -> None:
    monkeypatch.chdir(repo_root)
    write_demo_dataset(tmp_path / "demo_data", n_patients=6, frames=FRAMES, size=SIZE, n_folds=2, seed=3)
    args = [
        "--datajson_path", "Configs/demo/dataNpath_demo.json",
        f"--json§datadir={tmp_path / 'demo_data'}",
        f"--json§save_path={tmp_path / 'res'}",
        f"--json§tblog_path={tmp_path / 'tb'}",
        f"--json§DS_sanity_filters§dim1={FRAMES}",
        "--accelerator", "cpu", "--num_workers", "0", "--ampmode", "32",
        "--input_shape", f"{FRAMES},{SIZE},{SIZE}",
        "--batch_size", "2", "--effective_batch_size", "2",
        "--n_train_batches", "1.0", "--n_val_batches", "1.0", "--n_save_recon_subs", "1",
        "--modelID", "0", "--pythae_model", "vae", "--num_epochs", "1", "--trainID", "vae",
        "--model§latent_dim", str(L), "--model§pythae§n_features", "4",
        "--model§pythae§reconstruction_loss", "mse", "--eval§n_calc_processes", "0",
    ]  # fmt: skip
    assert main("recon", args) == 0
    (run_dir,) = [p for p in (tmp_path / "res").iterdir() if p.is_dir()]
    assert run_dir.name.endswith("_pythaemodel-vae")
    assert (run_dir / "Checkpoints" / "last.ckpt").is_file()
    shapes: dict[str, tuple] = {}
    with h5py.File(run_dir / "Output" / "emb.h5", "r") as f:
        f.visititems(lambda n, o: shapes.__setitem__(n, (o.shape, o.dtype)) if isinstance(o, h5py.Dataset) else None)
    assert shapes and all(s == ((1, 1, 1, L), np.float64) for s in shapes.values()), shapes
    with h5py.File(run_dir / "Output" / "recon.h5", "r") as f:
        recon_shapes = []
        f.visititems(lambda n, o: recon_shapes.append(o.shape) if isinstance(o, h5py.Dataset) else None)
    assert recon_shapes and all(s == (1, 1, 1, FRAMES, SIZE, SIZE) for s in recon_shapes)
