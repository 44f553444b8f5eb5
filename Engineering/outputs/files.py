"""Durable file writes for result files: plain bytes, fsynced, with the usual umask permissions.

Every result writer (HDF5, PNG, CSV, pickle, JSON) first renders its file to bytes in memory and then writes them
here with plain ``os`` calls. A full disk, a quota or a permission problem therefore surfaces as one
:class:`OutputError` naming the file and the cause ("No space left on device"), never inside a C library: libhdf5
segfaults when its close-time flush hits ENOSPC and h5py swallows the close error, which published corrupt files.

Files are created with mode ``0o666 & ~umask`` (``open(..., O_CREAT, 0o666)``), not mkstemp's 0600, so a group that
shares a results folder can read them. Temporary names and folder fsync are :mod:`Engineering.fileio`'s, the helper of
every other file written through a temporary file.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterable
from pathlib import Path

from Engineering.errors import OutputError
from Engineering.fileio import fsync_dir, temp_sibling

#: hidden temporary siblings written by :func:`atomic_write_bytes` (and the checkpoint/config writers):
#: ``.<name>.<anything>.tmp``; a killed run may leave them behind, the next run in the folder removes them
TEMP_PATTERN = re.compile(r"^\..+\.tmp$")


def describe_os_error(err: OSError) -> str:
    """``"No space left on device"`` for ENOSPC, else the error's own text (strerror or str)."""
    if err.errno is not None and err.strerror:
        return err.strerror
    if err.errno is not None:
        return os.strerror(err.errno)
    return str(err) or type(err).__name__


def write_error(path: Path | str, err: OSError, action: str = "cannot write") -> OutputError:
    """The one-line error of a failed write of ``path``."""
    return OutputError(f"{action} {path}: {describe_os_error(err)}")


def _write_fd(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data).cast("B")
    while view:
        written = os.write(fd, view)
        if written == 0:  # a regular file never does this; guard against an endless loop anyway
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        view = view[written:]
    os.fsync(fd)


def write_bytes(path: Path | str, data: bytes | bytearray | memoryview, *, exclusive: bool = False) -> None:
    """Write ``data`` to ``path`` (replacing it unless ``exclusive``), fsync it; any OSError → :class:`OutputError`.

    A file that could not be written completely is removed again.
    """
    try:
        _write_file(Path(path), data, exclusive)
    except OSError as err:
        raise write_error(path, err) from err


def _write_file(path: Path, data: bytes | bytearray | memoryview, exclusive: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o666)
    try:
        _write_fd(fd, data)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    try:
        os.close(fd)
    except OSError:  # NFS reports some write errors only at close
        path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path | str, data: bytes | bytearray | memoryview) -> None:
    """Replace ``path`` by ``data`` atomically: a fsynced temporary sibling, ``os.replace``, then fsync the folder.

    Readers see the previous complete file or the new complete file, never a part; on any error the previous file
    is left as it was and the temporary file is removed.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(path.parent, err, "cannot create the folder") from err
    tmp = temp_sibling(path)
    try:
        _write_file(tmp, data, exclusive=True)
        os.replace(tmp, path)
    except OSError as err:  # named after the file meant, not its temporary sibling
        tmp.unlink(missing_ok=True)
        raise write_error(path, err) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def remove_stale_temporaries(folders: Iterable[Path]) -> list[Path]:
    """Delete the hidden ``.*.tmp`` files directly inside each folder (left by killed writers); return them.

    Only call this while holding the run folder's lock: a live writer's temporary file looks the same.
    """
    removed = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            if TEMP_PATTERN.match(entry.name) and entry.is_file() and not entry.is_symlink():
                entry.unlink(missing_ok=True)
                removed.append(entry)
    return removed
