"""Choosing the checkpoint for ``--resume`` / ``--load_best`` / ``--load_model_4test``.

Lightning writes ``epoch=<E>-step=<S>.ckpt`` (best ``val_loss``, top-1) and ``last.ckpt`` / ``last-v<N>.ckpt`` into
``<run>/Checkpoints``. "Best" is the largest epoch, "last" the largest version (``last.ckpt`` counts as 0).
Every candidate is checked before it is chosen, under the one reading policy (weights only, nothing unpickled that
could run code): a corrupt one is reported and the previous good one is used; one that holds pickled objects beyond
tensors and plain data is refused with one line, unless ``--trust_checkpoint`` vouches for it.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from Engineering.configuration.sections import RunControl
from Engineering.errors import CheckpointError
from Engineering.hub.deepspeed import deepspeed_problem, is_deepspeed_checkpoint
from Engineering.pickle_policy import (
    NO_TRUST,
    TrustedFiles,
    UnreadablePickleError,
    UnsafePickleError,
    load_pickle,
)

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


def checkpoint_problem(path: Path, trust: TrustedFiles = NO_TRUST) -> str | None:
    """Why ``path`` cannot be resumed from (empty, truncated, not a checkpoint, no ``state_dict``), or None if fine.

    A file is read under the pickle policy (weights only, memory-mapped where possible); a DeepSpeed folder's
    layout and the objects named in its shards are checked without unpickling.

    Raises:
        UnsafePickleError: the checkpoint holds pickled objects beyond tensors and plain data and ``trust`` does not
            cover it. This is not corruption: the user decides (``--trust_checkpoint``), so no fallback is tried.
    """
    path = Path(path)
    if path.is_dir():  # DeepSpeed saves each checkpoint as a folder of shards
        if not is_deepspeed_checkpoint(path):
            return "a folder that is not a DeepSpeed checkpoint"
        try:
            deepspeed_problem(path, trust)
        except UnreadablePickleError as err:
            return err.reason
        except UnsafePickleError:
            raise
        except CheckpointError as err:  # bad layout: a missing tag folder or shard
            return str(err)
        return None
    try:
        size = path.stat().st_size
    except OSError as err:
        return f"unreadable ({err.strerror or err})"
    if size == 0:
        return "empty file (0 bytes)"
    try:
        ckpt = load_pickle(path, trust, mmap=True)
    except UnreadablePickleError as err:
        return err.reason
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        return "holds no 'state_dict'"
    return None


def _candidates(folder: Path, names: list[str], load_best: bool) -> list[str]:
    """Checkpoint names in order of preference: best (or last) first, then the others as fall-backs."""
    best = [key[-1] for key in sorted(filter(None, map(_best_key, (n for n in names if "epoch" in n))), reverse=True)]
    last = [key[-1] for key in sorted((_last_key(n) for n in names if "last" in n), reverse=True)]
    if load_best:
        if not best:
            log.warning("no epoch=<E> (best) checkpoint in %s; falling back to the last checkpoint", folder)
        return best + [n for n in last if n not in best]
    return last + [n for n in best if n not in last]


def select_checkpoint(run_dir_or_ckpt_dir: Path, load_best: bool, trust: TrustedFiles = NO_TRUST) -> Path:
    """Path of the best (largest epoch, then step, then ``-v<N>``, then name) or last (largest ``-v<N>``) checkpoint.

    With ``load_best`` and no epoch-named checkpoint (runs without validation), warn and use the last one.
    A candidate that is empty, truncated or holds no ``state_dict`` is reported by name and the next one is used
    (last-v<N> -> older last -> epoch files, or the reverse with ``load_best``); if none is usable, raise.
    A candidate the pickle policy refuses stops the search with that one line (see :func:`checkpoint_problem`).
    """
    folder = checkpoint_folder(run_dir_or_ckpt_dir)
    names = sorted(entry.name for entry in folder.iterdir() if not entry.name.startswith("."))
    candidates = _candidates(folder, names, load_best)
    if not candidates:
        looked_for = "'epoch=<E>-step=<S>.ckpt' or 'last*.ckpt'" if load_best else "'last*.ckpt'"
        raise CheckpointError(f"no checkpoint in {folder}: looked for {looked_for}")
    problems: list[str] = []
    for name in candidates:
        problem = checkpoint_problem(folder / name, trust)
        if problem is None:
            if problems:
                log.warning("skipped corrupt checkpoint(s) %s; using %s", "; ".join(problems), folder / name)
            return folder / name
        log.warning("checkpoint %s is corrupt: %s", folder / name, problem)
        problems.append(f"{name}: {problem}")
    raise CheckpointError(f"no usable checkpoint in {folder}: {'; '.join(problems)}")


def resume_checkpoint(run: RunControl, run_dir: Path, trust: TrustedFiles = NO_TRUST) -> Path | None:
    """Checkpoint of a resumed run, or None when not resuming.

    ``--load_model_4test`` (a run folder) replaces this run's folder and implies ``--resume``.
    """
    other = run.load_model_4test
    if not (run.resume or other):
        return None
    return select_checkpoint(Path(other) if other else Path(run_dir), run.load_best, trust)
