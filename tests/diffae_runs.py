"""Tiny trained DiffAE runs (3D and 2D) on the synthetic demo data, trained once per session for the latent tools.

3D: (6, 32, 32) cine volumes, two epochs with validation and TensorBoard (a curve with more than one point), tested
with its best checkpoint. 2D: the same cine series split into (32, 32) frames (``DS_split_volume``), one epoch.
Both write recon.h5 for every test subject, so manipulation at α = 0 can be compared with the test stage.
The session fixture ``diffae_runs`` (tests/conftest.py) trains them once for every test folder that uses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from Engineering.data.demo import write_demo_dataset
from Engineering.engines.runner import main
from tests.demo_args import demo_run_args

FRAMES, SIZE, LATENT = 6, 32, 8
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class DiffAERuns:
    """Run folders of the tiny DiffAE runs and the patients of their data."""

    run3d: Path
    run2d: Path
    patients: list[str]


def _train(datadir: Path, results: Path, trainID: str, *extra: str) -> Path:
    args = demo_run_args(datadir, results, FRAMES, SIZE) + [
        "--trainID", trainID, "--model§latent_dim", str(LATENT), "--model§DiffAE§net_ch", "8",
        "--model§DiffAE§T_eval", "2", "--n_save_recon_subs", "1", "--training§log_freq", "1",
        # a few steps must move the tested (EMA) network off its zero-initialised output layer, so that the decode
        # depends on the latent: no EMA lag and a larger learning rate
        "--model§DiffAE§ema_decay", "0", "--lr", "0.002", *extra,
    ]  # fmt: skip
    assert main("diffae", args) == 0
    (run_dir,) = [p for p in results.iterdir() if p.is_dir() and trainID in p.name]
    return run_dir


def train_diffae_runs(root: Path) -> DiffAERuns:
    """Write the demo data under ``root`` and train both runs there."""
    import pytest

    demo = write_demo_dataset(root / "demo_data", n_patients=8, frames=FRAMES, size=SIZE, n_folds=2, seed=3)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO_ROOT)  # the demo data JSON path is relative to the repository root
        run3d = _train(demo.datadir, root / "results", "viz3d", "--num_epochs", "2")
        run2d = _train(
            demo.datadir, root / "results", "viz2d", "--num_epochs", "1", "--run_mode", "3", "--is3D", "0",
            "--input_shape", f"{SIZE},{SIZE}", "--json§DS_split_volume=true",
        )  # fmt: skip
    return DiffAERuns(run3d, run2d, demo.patient_ids)
