"""Latents written by real tiny training runs, shared by the consumer and GWAS tests (trained once per session).

The demo data (tests/demo_args.py) is changed to hold the cases the consumers care about: one subject has
visit 3 only, two have visits 2 and 3, and one instance group is empty. Two seeds (run names ``…mulseed_<seed>…``)
of the tiny 3D DiffAE are trained for one epoch on every series and then infer the whole file into
``Output_fullDS`` (emb.h5; the first seed also recon.h5 of two subjects and metrics.csv).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import pytest

from Engineering.data.demo import FIELD, write_demo_dataset
from Engineering.engines.runner import main
from tests.demo_args import demo_run_args

FRAMES, SIZE, LATENT = 6, 32, 8
SEEDS = (1701, 42)
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class TinyRuns:
    """Where the runs went and what their emb.h5 must hold."""

    datadir: Path
    results: Path
    patients: list[str]
    expected_keys: list[str]  # the series the shipped selection keeps
    visit3_only: str  # the subject with a 3_0 visit and no 2_0 visit
    both_visits: list[str]  # subjects with 2_0 and 3_0

    def output(self, seed: int, suffix: str = "fullDS") -> Path:
        return self.results / f"demo_mulseed_{seed}_tinyfold0_prec32_DiffAE" / f"Output_{suffix}"

    def run_args(self, seed: int, *extra: str, datadir: Path | None = None) -> list[str]:
        """Arguments of the tiny DiffAE of ``seed`` (on ``datadir``, default the demo data), plus ``extra``."""
        args = demo_run_args(datadir or self.datadir, self.results, FRAMES, SIZE, tensorboard=False)
        return args + [
            "--trainID", f"mulseed_{seed}_tiny", "--seed", str(seed), "--model§latent_dim", str(LATENT),
            "--model§DiffAE§net_ch", "8", "--model§DiffAE§T_eval", "2", "--json§foldCSV", "0", *extra,
        ]  # fmt: skip


def _consumer_layout(datadir: Path, patients: list[str], expected: list[str]) -> tuple[list[str], str]:
    """Move the first patient's visit 2 to visit 3 and leave an empty instance group on the last.

    The visit-3-only subject has the smallest ID, so ordering rows by ID would not give the companion's order.
    """
    only3 = patients[0]
    with h5py.File(datadir / "data.h5", "a") as f:
        f.move(f"{only3}/{FIELD}/2_0", f"{only3}/{FIELD}/3_0")
        f.create_group(f"{patients[-1]}/{FIELD}/3_0")
    moved = [k.replace(f"{only3}/{FIELD}/2_0/", f"{only3}/{FIELD}/3_0/") for k in expected]
    return sorted(moved), only3


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory) -> TinyRuns:
    root = tmp_path_factory.mktemp("tiny_runs")
    demo = write_demo_dataset(root / "demo_data", n_patients=8, frames=FRAMES, size=SIZE, n_folds=2, seed=3)
    expected, only3 = _consumer_layout(demo.datadir, demo.patient_ids, demo.expected_keys)
    both = sorted({k.split("/")[0] for k in expected if "/3_0/" in k} - {only3})
    runs = TinyRuns(demo.datadir, root / "results", demo.patient_ids, expected, only3, both)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO_ROOT)  # the demo data JSON path is relative to the repository root
        for seed in SEEDS:
            extra = ["--run_mode", "3", "--num_epochs", "1", "--output_suffix", "fullDS", "--n_save_recon_subs", "2"]
            if seed != SEEDS[0]:
                extra.append("--test_emb_only")  # recon.h5 and metrics.csv of the first seed are enough
            assert main("diffae", runs.run_args(seed, *extra)) == 0
    return runs


def infer(runs: TinyRuns, seed: int, suffix: str, *extra: str, datadir: Path | None = None) -> Path:
    """Inference of the trained ``seed`` run into ``Output_<suffix>``; returns its emb.h5."""
    args = runs.run_args(seed, "--resume", "--run_mode", "2", "--output_suffix", suffix, "--test_emb_only", *extra,
                         datadir=datadir)  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO_ROOT)
        assert main("diffae", args) == 0
    return runs.output(seed, suffix) / "emb.h5"
