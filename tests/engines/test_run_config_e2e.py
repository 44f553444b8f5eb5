"""A finished run is tested with nothing but ``--resume --run_mode 2 --run_dir RUN``; a changed net_ch is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from Engineering.data.demo import write_demo_dataset
from Engineering.engines.runner import main
from Engineering.outputs import check_emb_h5
from tests.demo_args import demo_run_args

FRAMES, SIZE = 6, 32


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*")}


@pytest.mark.slow
def test_demo_run_is_tested_from_its_stored_configuration(tmp_path, monkeypatch, repo_root):
    monkeypatch.chdir(repo_root)
    demo = write_demo_dataset(tmp_path / "demo_data", n_patients=8, frames=FRAMES, size=SIZE, n_folds=2, seed=3)
    train = demo_run_args(tmp_path / "demo_data", tmp_path / "results", FRAMES, SIZE, tensorboard=False) + [
        "--num_epochs", "1", "--trainID", "tiny", "--run_mode", "1", "--model§latent_dim", "8",
        "--model§DiffAE§net_ch", "8", "--model§DiffAE§T_eval", "2", "--model§DiffAE§sample_every_batches", "0",
    ]  # fmt: skip
    assert main("diffae", train) == 0
    run = tmp_path / "results" / "demo_tinyfold0_prec32_DiffAE"  # --ampmode 32 and --trainID are in the name
    assert not (run / "Output" / "emb.h5").exists()  # run_mode 1 trains only

    # nothing but the run folder: input shape, ampmode, latent size, net_ch, data paths all come from the run
    assert main("diffae", ["--resume", "--run_mode", "2", "--run_dir", str(run)]) == 0
    problems = check_emb_h5(run / "Output" / "emb.h5", latent_dim=8)
    assert problems == [] and (run / "Output" / "resolved_config.yaml").is_file()
    assert set(demo.expected_keys) >= set(_emb_keys(run / "Output" / "emb.h5")) != set()

    # a different network is refused in one line before anything is written
    before = _files(run)
    cmd = [sys.executable, "Executors/main_diffAE.py", "--resume", "--run_mode", "2", "--run_dir", str(run),
           "--model§DiffAE§net_ch", "64", "--output_suffix", "wide"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"imlatent: error: checkpoint {run / 'Checkpoints' / 'last.ckpt'} does not fit this network: "
        "the checkpoint has net_ch 8, this command asks for 64"
    )
    assert _files(run) == before


def _emb_keys(path: Path) -> list[str]:
    import h5py

    keys: list[str] = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: keys.append(name) if isinstance(obj, h5py.Dataset) else None)
    return keys
