"""Choosing the checkpoint for ``--resume`` / ``--load_best`` / ``--load_model_4test``.

Lightning writes ``epoch=<E>-step=<S>.ckpt`` (best ``val_loss``, top-1) and ``last.ckpt`` / ``last-v<N>.ckpt`` into
``<run>/Checkpoints``. "Best" is the largest epoch, "last" the largest version (``last.ckpt`` counts as 0).
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

from Engineering.errors import CheckpointError

log = logging.getLogger("imlatent")

_EPOCH_RE = re.compile(r"epoch=(\d+)")
_STEP_RE = re.compile(r"step=(\d+)")
_VERSION_RE = re.compile(r"-v(\d+)")


def checkpoint_folder(run_dir_or_ckpt_dir: Path) -> Path:
    """``<run>/Checkpoints`` when given a run folder, else the folder itself if it exists."""
    path = Path(run_dir_or_ckpt_dir)
    if (path / "Checkpoints").is_dir():
        return path / "Checkpoints"
    if path.is_dir():
        return path
    raise CheckpointError(f"checkpoint folder {path} does not exist (expected a run folder holding Checkpoints/)")


def _version(name: str) -> int:
    """N of a Lightning collision suffix ``-v<N>``; 0 without one."""
    match = _VERSION_RE.search(name)
    return int(match.group(1)) if match else 0


def _best_key(name: str) -> tuple[int, int, int, str] | None:
    epoch = _EPOCH_RE.search(name)
    if epoch is None:
        return None
    step = _STEP_RE.search(name)
    return int(epoch.group(1)), int(step.group(1)) if step else -1, _version(name), name


def _last_key(name: str) -> tuple[int, str]:
    return _version(name), name


def select_checkpoint(run_dir_or_ckpt_dir: Path, load_best: bool) -> Path:
    """Path of the best (largest epoch, then step, then ``-v<N>``, then name) or last (largest ``-v<N>``) checkpoint.

    With ``load_best`` and no epoch-named checkpoint (runs without validation), warn and use the last one.
    """
    folder = checkpoint_folder(run_dir_or_ckpt_dir)
    names = sorted(entry.name for entry in folder.iterdir() if not entry.name.startswith("."))
    if load_best:
        best = [key for key in map(_best_key, (n for n in names if "epoch" in n)) if key is not None]
        if best:
            return folder / max(best)[-1]
        log.warning("no epoch=<E> (best) checkpoint in %s; falling back to the last checkpoint", folder)
    last = [_last_key(n) for n in names if "last" in n]
    if last:
        return folder / max(last)[-1]
    looked_for = "'epoch=<E>-step=<S>.ckpt' or 'last*.ckpt'" if load_best else "'last*.ckpt'"
    raise CheckpointError(f"no checkpoint in {folder}: looked for {looked_for}")


def resume_checkpoint(hparams: argparse.Namespace, run_dir: Path) -> Path | None:
    """Checkpoint of a resumed run, or None when not resuming.

    ``--load_model_4test`` (a run folder) replaces this run's folder and implies ``--resume``.
    """
    other = getattr(hparams, "load_model_4test", "")
    if not (getattr(hparams, "resume", False) or other):
        return None
    return select_checkpoint(Path(other) if other else Path(run_dir), bool(getattr(hparams, "load_best", False)))
