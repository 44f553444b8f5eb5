"""main_recon.py with the LSTM wrapper end to end: cine frames stacked along the channel axis ("time as
channels") feed the wrapped custom FactorVAE; one latent per series is written to emb.h5."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from Engineering.data.demo import write_demo_dataset
from Engineering.engines.runner import main

FRAMES, SIZE, LATENT = 4, 16, 8


@pytest.mark.slow
def test_lstm_wrapped_factor_vae_trains_and_writes_latents(tmp_path, monkeypatch, repo_root):
    monkeypatch.chdir(repo_root)
    write_demo_dataset(tmp_path / "demo_data", n_patients=8, frames=FRAMES, size=SIZE, n_folds=2, seed=3)
    args = [
        "--datajson_path", "Configs/demo/dataNpath_demo.json", f"--json§datadir={tmp_path / 'demo_data'}",
        f"--json§save_path={tmp_path / 'res'}", "--no-tbactive", f"--json§DS_sanity_filters§dim1={FRAMES}",
        "--json§DS_slice_dim=2",  # keep time on its own axis: (T, H, W) samples, time as channels for a 2D model
        "--accelerator", "cpu", "--num_workers", "0", "--ampmode", "32", "--is3D", "0",
        "--input_shape", f"{SIZE},{SIZE}", "--in_channels", "1", "--batch_size", "2", "--effective_batch_size", "2",
        "--n_train_batches", "1.0", "--n_val_batches", "1.0", "--modelID", "0", "--pythae_model", "custom_factor_vae",
        "--pythae_wrapper_mode", "1", "--model§latent_dim", str(LATENT), "--num_epochs", "1",
        "--eval§n_calc_processes", "0",
    ]  # fmt: skip
    assert main("recon", args) == 0
    (emb_path,) = (tmp_path / "res").glob("*/Output/emb.h5")
    with h5py.File(emb_path, "r") as f:
        values = []
        f.visititems(lambda name, obj: values.append(obj[()]) if isinstance(obj, h5py.Dataset) else None)
    assert values and all(v.shape[:3] == (1, 1, 1) and np.isfinite(v).all() for v in values)
    # bidirectional LSTM (the YAML default): both directions of the last layer, 2 x latent_dim
    assert {v.shape[-1] for v in values} == {2 * LATENT}
