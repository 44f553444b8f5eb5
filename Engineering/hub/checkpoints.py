"""Choosing the checkpoint for ``--resume`` / ``--load_best`` / ``--load_model_4test``.

Lightning writes ``epoch=<E>-step=<S>.ckpt`` (best ``val_loss``, top-1) and ``last.ckpt`` / ``last-v<N>.ckpt`` into
``<run>/Checkpoints``. "Best" is the largest epoch, "last" the largest version (``last.ckpt`` counts as 0).
Every candidate is checked before it is chosen; a corrupt one is reported and the previous good one is used.
"""

from __future__ import annotations

import argparse
import logging
import pickle
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


def is_deepspeed_checkpoint(path: Path) -> bool:
    """True for the folder layout DeepSpeed writes (``latest`` tag file and/or ``checkpoint/`` shards)."""
    return path.is_dir() and ((path / "latest").is_file() or (path / "checkpoint").is_dir())


def checkpoint_problem(path: Path) -> str | None:
    """Why ``path`` cannot be resumed from (empty, truncated, not a checkpoint, no ``state_dict``), or None if fine.

    The file is read with ``torch.load(weights_only=True)`` (memory-mapped where possible), so no pickled code runs;
    an intact file that only holds non-tensor objects the safe unpickler refuses counts as fine (not corrupt).
    """
    import torch

    path = Path(path)
    if path.is_dir():  # DeepSpeed saves each checkpoint as a folder of shards
        return None if is_deepspeed_checkpoint(path) else "a folder that is not a DeepSpeed checkpoint"
    try:
        size = path.stat().st_size
    except OSError as err:
        return f"unreadable ({err.strerror or err})"
    if size == 0:
        return "empty file (0 bytes)"
    try:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" in str(err) and _intact_zip(path):
            return None  # intact, but holds objects beyond plain tensors (e.g. a Namespace): trusted loaders read it
        return f"not a readable checkpoint (UnpicklingError: {str(err).strip()[:160]})"
    except Exception as err:  # noqa: BLE001 - any failure to read means the file is unusable
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return f"not a readable checkpoint ({type(err).__name__}: {first[:160]})"
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        return "holds no 'state_dict'"
    return None


def _intact_zip(path: Path) -> bool:
    """True when ``path`` is a zip archive (torch's format) whose every member passes its CRC check."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (zipfile.BadZipFile, OSError):
        return False


def _candidates(folder: Path, names: list[str], load_best: bool) -> list[str]:
    """Checkpoint names in order of preference: best (or last) first, then the others as fall-backs."""
    best = [key[-1] for key in sorted(filter(None, map(_best_key, (n for n in names if "epoch" in n))), reverse=True)]
    last = [key[-1] for key in sorted((_last_key(n) for n in names if "last" in n), reverse=True)]
    if load_best:
        if not best:
            log.warning("no epoch=<E> (best) checkpoint in %s; falling back to the last checkpoint", folder)
        return best + [n for n in last if n not in best]
    return last + [n for n in best if n not in last]


def select_checkpoint(run_dir_or_ckpt_dir: Path, load_best: bool) -> Path:
    """Path of the best (largest epoch, then step, then ``-v<N>``, then name) or last (largest ``-v<N>``) checkpoint.

    With ``load_best`` and no epoch-named checkpoint (runs without validation), warn and use the last one.
    A candidate that is empty, truncated or holds no ``state_dict`` is reported by name and the next one is used
    (last-v<N> -> older last -> epoch files, or the reverse with ``load_best``); if none is usable, raise.
    """
    folder = checkpoint_folder(run_dir_or_ckpt_dir)
    names = sorted(entry.name for entry in folder.iterdir() if not entry.name.startswith("."))
    candidates = _candidates(folder, names, load_best)
    if not candidates:
        looked_for = "'epoch=<E>-step=<S>.ckpt' or 'last*.ckpt'" if load_best else "'last*.ckpt'"
        raise CheckpointError(f"no checkpoint in {folder}: looked for {looked_for}")
    problems: list[str] = []
    for name in candidates:
        problem = checkpoint_problem(folder / name)
        if problem is None:
            if problems:
                log.warning("skipped corrupt checkpoint(s) %s; using %s", "; ".join(problems), folder / name)
            return folder / name
        log.warning("checkpoint %s is corrupt: %s", folder / name, problem)
        problems.append(f"{name}: {problem}")
    raise CheckpointError(f"no usable checkpoint in {folder}: {'; '.join(problems)}")


def resume_checkpoint(hparams: argparse.Namespace, run_dir: Path) -> Path | None:
    """Checkpoint of a resumed run, or None when not resuming.

    ``--load_model_4test`` (a run folder) replaces this run's folder and implies ``--resume``.
    """
    other = getattr(hparams, "load_model_4test", "")
    if not (getattr(hparams, "resume", False) or other):
        return None
    return select_checkpoint(Path(other) if other else Path(run_dir), bool(getattr(hparams, "load_best", False)))
