"""Shared pytest fixtures and settings: CPU only, one thread, quiet Lightning."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# one torch thread in the executors these tests start too (the runner honours an explicit OMP_NUM_THREADS): the
# tests share a few cores with each other, where more threads than free cores only wait for each other
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True, scope="session")
def _torch_single_thread():
    import torch

    torch.set_num_threads(1)
    yield


@pytest.fixture(autouse=True, scope="session")
def _warm_torch_optim():
    """torch imports its compiler stack lazily on the first optimiser (~3 s): pay that once, outside any test."""
    import torch

    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)


@pytest.fixture(scope="session")
def diffae_runs(tmp_path_factory):
    """Tiny trained 3D and 2D DiffAE runs (tests/diffae_runs.py), trained once per session for the latent tools
    (tests/engines) and the explorer (tests/apps)."""
    from tests.diffae_runs import train_diffae_runs

    return train_diffae_runs(tmp_path_factory.mktemp("diffae_runs"))


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def golden_dir() -> Path:
    return REPO_ROOT / "tests" / "data" / "golden"
