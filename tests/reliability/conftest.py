"""Shared pieces of the reliability tests: a tiny demo data set and executor arguments."""

from __future__ import annotations

import os
import subprocess
import sys
import time
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


DRIVER = "tests/reliability/reliability_driver.py"


def start_driver(
    repo: Path, script: str, args: list[str], sleep: float = 0.0, marks: Path | None = None, pause_at: str = ""
) -> subprocess.Popen:
    """Start ``reliability_driver.py script args`` (see its doc for the pacing, marks and pauses)."""
    env = dict(os.environ, IMLATENT_TEST_BATCH_SLEEP=str(sleep), PYTHONUNBUFFERED="1", IMLATENT_TEST_PAUSE_AT=pause_at)
    if marks is not None:
        env["IMLATENT_TEST_MARK_DIR"] = str(marks)
    return subprocess.Popen(
        [sys.executable, DRIVER, script, *args],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    """Wait until ``path`` exists; fail with the run's stderr if it ends first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"run ended (rc {proc.returncode}) before {path.name}: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.02)


def finish(proc: subprocess.Popen, timeout: float = 120.0) -> tuple[int, str]:
    """Wait for the run; its exit status and stderr."""
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err
