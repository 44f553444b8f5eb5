"""The one reading policy for every file that can hold pickles: weights only, unless the user vouches for the file.

Lightning checkpoints, DeepSpeed checkpoint folders, ``.bin``/``.pt`` weights and old exports are pickles, and
unpickling a crafted file runs whatever code it names. Every such file is therefore read here, and only here, with
``torch.load(weights_only=True)``: tensors, containers and plain Python values load, anything else is refused
before it is built. A file that needs more is refused with one line naming the file and the object types found,
pointing to ``--trust_checkpoint PATH`` for files the user made or vouches for (:class:`TrustedFiles`).

DeepSpeed writes a few of its own small objects (the ZeRO stage enum, the loss scaler, fragment addresses) next to
the tensors. :func:`load_deepspeed_part` reads those as inert placeholders that keep their arguments and run
nothing; :data:`DEEPSPEED_OBJECTS` lists the ones accepted, so a crafted folder that names anything else is
refused like any other file.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from Engineering.errors import CheckpointError

log = logging.getLogger("imlatent")

TRUST_OPTION = "--trust_checkpoint"
"""Command-line option through which the user vouches for a checkpoint file or folder."""

DEEPSPEED_OBJECTS = frozenset(
    {
        "deepspeed.runtime.zero.config.ZeroStageEnum",
        "deepspeed.runtime.fp16.loss_scaler.LossScaler",
        "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
        "deepspeed.utils.tensor_fragment.fragment_address",
    }
)
"""Non-tensor objects DeepSpeed stores in its ``*_optim_states.pt`` files. Each is a plain value holder (an int
enum, a dataclass, an object whose state is a dict of numbers), harmless to construct; we read them as
placeholders, and a DeepSpeed resume (which unpickles the folder with DeepSpeed's own loader) is allowed only when
nothing else is named."""

_GLOBAL_IN_MESSAGE = re.compile(r"GLOBAL ([\w.]+)")


class UnsafePickleError(CheckpointError):
    """A file holds pickled objects beyond tensors and plain data, and the user has not vouched for it."""


class UnreadablePickleError(CheckpointError):
    """A file is empty, truncated or not a torch file at all; ``reason`` is the short cause."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class TrustedFiles:
    """The files the user vouches for (``--trust_checkpoint``): a path trusts itself and, for a folder, all inside.

    Paths are compared after resolving symbolic links, so a link cannot borrow the trust of another file.
    """

    paths: tuple[Path, ...] = ()

    @classmethod
    def of(cls, *paths: str | os.PathLike[str]) -> TrustedFiles:
        """Trust ``paths`` (blank entries are ignored)."""
        return cls(tuple(Path(p).expanduser().resolve() for p in paths if str(p).strip()))

    def covers(self, path: str | os.PathLike[str]) -> bool:
        """True when ``path`` is one of the trusted paths or lies inside a trusted folder."""
        if not self.paths:
            return False
        target = Path(path).expanduser().resolve()
        return any(target == p or p in target.parents for p in self.paths)

    def __bool__(self) -> bool:
        return bool(self.paths)


NO_TRUST = TrustedFiles()
"""The default: no file is trusted beyond weights-only reading."""


def refusal(path: Path, found: Iterable[str], what: str = "checkpoint") -> str:
    """The one-line refusal of ``path``, naming the object types found and the opt-in option."""
    names = sorted(set(found))
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return (
        f"{what} {path} holds pickled objects beyond tensors and plain data ({shown or 'unknown types'}); "
        f"refused because unpickling it could run code. If you made this file yourself or trust its source, "
        f"rerun with {TRUST_OPTION} {path}"
    )


def load_pickle(
    path: str | os.PathLike[str], trust: TrustedFiles = NO_TRUST, *, mmap: bool = False, what: str = "checkpoint"
) -> Any:
    """Read a torch/pickle file on the CPU under the policy: weights only, or everything if ``trust`` covers it.

    Args:
        path: a ``torch.save`` file (zip or legacy format).
        trust: the files the user vouches for.
        mmap: memory-map the tensors (zip format; silently not for the legacy format).
        what: how the file is named in messages ("checkpoint", "weight file").

    Raises:
        UnsafePickleError: the file needs more than the weights-only reader and is not trusted.
        UnreadablePickleError: the file is empty, truncated or not a torch file.
    """
    path = Path(path)
    try:
        return _torch_load(path, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        found = unsafe_objects(path, err)
        if found is None:
            raise _unreadable(path, err, what) from None
        if not trust.covers(path):
            raise UnsafePickleError(refusal(path, found, what)) from None
    log.warning("%s %s: fully unpickled because %s vouches for it", what, path, TRUST_OPTION)
    try:
        return _torch_load(path, weights_only=False, mmap=mmap)
    except Exception as err:  # noqa: BLE001 - a trusted file may fail in any way; report it as one line
        raise _unreadable(path, err, what) from None


def _torch_load(path: Path, *, weights_only: bool, mmap: bool) -> Any:
    """The only ``torch.load`` of the code base (the safety scan checks this)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only, mmap=mmap)
    except pickle.UnpicklingError:
        raise
    except RuntimeError as err:
        if mmap and "mmap" in str(err):  # legacy (non-zip) files cannot be memory-mapped
            return torch.load(path, map_location="cpu", weights_only=weights_only)
        raise _unreadable(path, err) from None
    except (EOFError, OSError, ValueError, AttributeError, KeyError, IndexError, TypeError) as err:
        raise _unreadable(path, err) from None


def _unreadable(path: Path, err: BaseException, what: str = "checkpoint") -> UnreadablePickleError:
    text = str(err).strip()
    first = text.splitlines()[0][:160] if text else ""
    if isinstance(err, OSError) and err.strerror:
        first = err.strerror
    if path.is_file() and path.stat().st_size == 0:
        reason = "empty file (0 bytes)"
    else:
        reason = f"not a readable checkpoint ({type(err).__name__}: {first})"
    return UnreadablePickleError(f"{what} {path} is {reason}", reason)


def unsafe_objects(path: Path, err: BaseException | None = None) -> list[str] | None:
    """The pickled globals of ``path`` that the weights-only reader refuses, read without unpickling anything.

    Returns None when the file is not an intact torch file (the refusal then means corruption, not objects); an
    empty list when it is intact but the refusal names no global (e.g. an unsupported pickle opcode).
    """
    if zipfile.is_zipfile(path):
        if not _intact_zip(path):
            return None
        try:
            return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
        except Exception:  # noqa: BLE001 - opcodes torch's static scanner does not know: fall back to the message
            pass
    named = _GLOBAL_IN_MESSAGE.findall(str(err or ""))
    if named:
        return named
    return [] if zipfile.is_zipfile(path) else None


def _intact_zip(path: Path) -> bool:
    """True when every member of the zip archive ``path`` passes its CRC check."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (zipfile.BadZipFile, OSError):
        return False


# --------------------------------------------------------------------------------------------------- DeepSpeed


class DeepSpeedPlaceholder:
    """Inert stand-in for one of :data:`DEEPSPEED_OBJECTS`: keeps its constructor arguments and state, runs nothing."""

    global_name = ""
    args: tuple[Any, ...]
    state: Any

    def __new__(cls, *args: Any) -> DeepSpeedPlaceholder:
        obj = super().__new__(cls)
        obj.args, obj.state = args, None
        return obj

    def __init__(self, *args: Any) -> None:  # the arguments are kept by __new__
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __int__(self) -> int:
        """The enum value (``ZeroStageEnum(2)`` → 2)."""
        return int(self.args[0])

    def __repr__(self) -> str:
        return f"<{self.global_name}{self.args!r}>"


_PLACEHOLDERS: list[Callable[..., Any] | tuple[Callable[..., Any], str]] = [
    (type(name.rsplit(".", 1)[1], (DeepSpeedPlaceholder,), {"global_name": name}), name)
    for name in sorted(DEEPSPEED_OBJECTS)
]


def deepspeed_part_problem(path: Path, trust: TrustedFiles = NO_TRUST) -> None:
    """Refuse a file of a DeepSpeed folder that names objects other than :data:`DEEPSPEED_OBJECTS` (not trusted).

    Nothing is unpickled: the pickle's globals are listed statically.
    """
    found = unsafe_objects(path)
    if found is None:
        raise UnreadablePickleError(f"DeepSpeed file {path} is not an intact torch file", "not an intact torch file")
    foreign = [name for name in found if name not in DEEPSPEED_OBJECTS]
    if foreign and not trust.covers(path):
        raise UnsafePickleError(refusal(path, foreign, "DeepSpeed file"))


def load_deepspeed_part(path: Path, trust: TrustedFiles = NO_TRUST) -> Any:
    """Read one ``*_model_states.pt`` / ``*_optim_states.pt`` file weights-only, DeepSpeed's objects as placeholders.

    Raises:
        UnsafePickleError: the file names other objects and is not trusted.
        UnreadablePickleError: the file is not an intact torch file.
    """
    deepspeed_part_problem(path, trust)
    with torch.serialization.safe_globals(_PLACEHOLDERS):
        return load_pickle(path, trust, mmap=True, what="DeepSpeed file")
