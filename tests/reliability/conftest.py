"""Shared pieces of the reliability tests: a tiny demo data set and executor arguments."""

from __future__ import annotations

from pathlib import Path

import pytest

from Engineering.data.demo import write_demo_dataset
from tests.demo_args import demo_run_args

FRAMES, SIZE = 6, 32


@pytest.fixture(scope="session")
def rel_demo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rel_demo")
    write_demo_dataset(root / "demo_data", n_patients=8, frames=FRAMES, size=SIZE, n_folds=2, seed=3)
    return root


def common_args(root: Path, results: Path, datadir: Path | None = None) -> list[str]:
    """Arguments of a tiny CPU run on the demo data (recon Identity unless --modelID/--taskID say otherwise)."""
    return demo_run_args(datadir or root / "demo_data", results, FRAMES, SIZE) + ["--n_save_recon_subs", "1"]
