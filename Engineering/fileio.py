"""Atomic file writes with the permissions a user expects: one helper for every file written through a temporary file.

A file is first written under a hidden temporary name next to its target (``.<name>.<pid>.<random>.tmp``), flushed
to disk, then moved into place with :func:`os.replace`, so a reader (or a run killed mid-write) sees the previous
complete file or the new complete file, never a part.

``tempfile.mkstemp`` (and safetensors' writer) create files with mode 0600, and the rename keeps that mode: on a
shared cluster the rest of the group could not read a resolved config, a converted ``data.h5``, a fold CSV, an index
cache or an exported ``model.safetensors``. Here every published file gets ``0o666 & ~umask``, the mode of any
ordinarily created file, and new folders ``0o777 & ~umask``. Result files, rendered to bytes first, are written by
:mod:`Engineering.outputs.files` with the same temporary names and the same mode.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

FILE_MODE = 0o666
"""Mode requested for new files; the umask is applied by the kernel."""

FOLDER_MODE = 0o777
"""Mode requested for new folders; the umask is applied by the kernel."""


def temp_sibling(path: Path, suffix: str = ".tmp") -> Path:
    """A hidden, unique name in ``path``'s folder: ``.<name>.<pid>.<random><suffix>``."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{suffix}")


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Write ``path`` atomically: ``write(tmp)`` fills a temporary sibling, which is fsynced and renamed to ``path``.

    ``write`` receives the temporary path, which already exists (empty, mode ``0o666 & ~umask``); it may open it by
    name (h5py, pandas, torch.save, safetensors) or replace it. The parent folder is created if needed. On any
    error the temporary file is removed and the previous ``path`` is left as it was.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    tmp = new_temp_file(path)
    try:
        write(tmp)
        publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def current_umask() -> int:
    """The process umask, read without changing it where Linux reports it (``/proc/self/status``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore at once
    os.umask(mask)
    return mask


def new_temp_file(path: Path) -> Path:
    """Create an empty temporary sibling of ``path`` (mode ``0o666 & ~umask``; parent folder created) and return it.

    For writers that keep the file open across several calls (e.g. an HDF5 converter); finish with :func:`publish`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), FILE_MODE))
    return tmp


def publish(tmp: Path, path: Path) -> None:
    """Give the finished ``tmp`` mode ``0o666 & ~umask``, fsync it, move it onto ``path`` (atomic on POSIX) and
    persist the rename."""
    os.chmod(tmp, FILE_MODE & ~current_umask())  # some writers (safetensors) recreate the file with mode 0600
    _fsync_file(tmp)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_write_text(
    path: str | os.PathLike[str], text: str, encoding: str = "utf-8", newline: str | None = None
) -> Path:
    """:func:`atomic_write` of a text file."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding=encoding, newline=newline) as handle:
            handle.write(text)

    return atomic_write(path, write)


def temp_folder(target: Path) -> Path:
    """Create and return a new hidden folder next to ``target`` (mode ``0o777 & ~umask``, unlike mkdtemp's 0700),
    to be filled and then renamed onto ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        folder = temp_sibling(target)
        try:
            os.mkdir(folder, FOLDER_MODE)
            return folder
        except FileExistsError:  # a random-name collision: draw again
            continue


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Persist the entries of ``folder`` (the rename itself, POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
