"""Subprocess driver for the kill/signal tests: runs an executor with test-only pacing callbacks.

Usage: ``python tests/reliability/reliability_driver.py recon|diffae ARGS...``. Environment:

* ``IMLATENT_TEST_BATCH_SLEEP``: seconds to sleep after every training batch (gives the test time to signal it);
* ``IMLATENT_TEST_MARK_DIR``: folder where ``epoch<E>.started`` is written at the first batch of every epoch.

The reliability callbacks are added here too when ``build_callbacks`` does not add them yet, so the tests run
before and after they are wired into ``trainer_setup.build_callbacks``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from lightning.pytorch.callbacks import Callback  # noqa: E402

import Engineering.engines.runner as runner  # noqa: E402
from Engineering.engines.reliability import RNGStateCheckpoint, reliability_callbacks  # noqa: E402
from Engineering.errors import run_guarded  # noqa: E402


class Pacing(Callback):
    """Sleeps after each training batch and marks the start of each epoch on disk."""

    def __init__(self, sleep: float, mark_dir: str | None) -> None:
        self.sleep = sleep
        self.mark_dir = Path(mark_dir) if mark_dir else None

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self.mark_dir is not None and batch_idx == 0:
            self.mark_dir.mkdir(parents=True, exist_ok=True)
            (self.mark_dir / f"epoch{trainer.current_epoch}.started").touch()

    def on_train_batch_end(self, *args: Any) -> None:
        time.sleep(self.sleep)


def _build_callbacks(hp: Any, checkpoint_dir: Path, validate: bool) -> list[Callback]:
    callbacks = _original(hp, checkpoint_dir, validate)
    if not callbacks:  # dev_run < 0 (barebones)
        return callbacks
    if not any(isinstance(cb, RNGStateCheckpoint) for cb in callbacks):
        callbacks += reliability_callbacks(checkpoint_dir)
    sleep = float(os.environ.get("IMLATENT_TEST_BATCH_SLEEP", "0"))
    return callbacks + [Pacing(sleep, os.environ.get("IMLATENT_TEST_MARK_DIR"))]


_original = runner.build_callbacks

if __name__ == "__main__":
    runner.build_callbacks = _build_callbacks
    script = sys.argv[1]
    sys.exit(run_guarded(lambda argv: runner.main(script, argv), sys.argv[2:]))
