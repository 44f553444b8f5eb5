"""Subprocess driver for the kill/signal tests: runs an executor with test-only pacing callbacks.

Usage: ``python tests/reliability/reliability_driver.py recon|diffae ARGS...``. Environment:

* ``IMLATENT_TEST_BATCH_SLEEP``: seconds to sleep after every training batch (gives the test time to signal it);
* ``IMLATENT_TEST_MARK_DIR``: folder where ``epoch<E>.started`` is written at the first batch of every epoch;
* ``IMLATENT_TEST_PAUSE_AT``: one moment of the test stage (:data:`PAUSES`) where ``<moment>.reached`` is written to
  the mark folder and the process sleeps, so that the test can SIGKILL it exactly there.

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


def _build_callbacks(cfg: Any, checkpoint_dir: Path, validate: bool) -> list[Callback]:
    callbacks = _original(cfg, checkpoint_dir, validate)
    if not callbacks:  # dev_run < 0 (barebones)
        return callbacks
    if not any(isinstance(cb, RNGStateCheckpoint) for cb in callbacks):
        callbacks += reliability_callbacks(checkpoint_dir)
    sleep = float(os.environ.get("IMLATENT_TEST_BATCH_SLEEP", "0"))
    return callbacks + [Pacing(sleep, os.environ.get("IMLATENT_TEST_MARK_DIR"))]


_original = runner.build_callbacks


def _pause(moment: str) -> None:
    mark_dir = Path(os.environ["IMLATENT_TEST_MARK_DIR"])
    mark_dir.mkdir(parents=True, exist_ok=True)
    (mark_dir / f"{moment}.reached").touch()
    time.sleep(120)


def _pause_before(owner: Any, name: str, moment: str) -> None:
    real = getattr(owner, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        _pause(moment)
        return real(*args, **kwargs)

    setattr(owner, name, wrapped)


def _pause_after(owner: Any, name: str, moment: str) -> None:
    real = getattr(owner, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        _pause(moment)
        return result

    setattr(owner, name, wrapped)


def _install_pause(moment: str) -> None:
    import Engineering.outputs.collector as collector
    import Engineering.outputs.outset as outset
    from Engineering.engines.base import BaseEngine

    hooks = {
        "test_step": lambda: _pause_before(BaseEngine, "test_step", moment),  # inference running, nothing written
        "after_emb": lambda: _pause_after(collector, "write_results_h5", moment),  # emb.h5 staged, the rest not yet
        "before_swap": lambda: _pause_before(outset, "_swap_in", moment),  # staged set and manifest complete
        "after_exchange": lambda: _pause_after(outset, "_exchange", moment),  # swapped, old set not yet removed
    }
    hooks[moment]()


PAUSES = ("test_step", "after_emb", "before_swap", "after_exchange")

if __name__ == "__main__":
    runner.build_callbacks = _build_callbacks
    if os.environ.get("IMLATENT_TEST_PAUSE_AT"):
        _install_pause(os.environ["IMLATENT_TEST_PAUSE_AT"])
    script = sys.argv[1]
    sys.exit(run_guarded(lambda argv: runner.main(script, argv), sys.argv[2:]))
