"""Output folders published as a set: a staging folder, a completion manifest written last, one atomic swap.

A test run writes ``Output*/`` into a hidden staging folder beside it, ``.<Output>.staging-<pid>-<hex>``. When every
writer has finished, :meth:`OutputSet.publish` fsyncs each file, writes ``output_manifest.json`` (file sizes and
SHA-256, run, checkpoint, code version) last, fsyncs the folders and swaps the staging folder with the published one
in one ``renameat2(RENAME_EXCHANGE)`` call. A reader therefore sees the previous complete set or the new complete
set, never a mixture: SIGKILL at any moment leaves the published folder as it was or as it will be. File systems
without RENAME_EXCHANGE (some network file systems) fall back to two renames; a kill between them leaves the
previous set as ``.<Output>.old-*``, which the next run in the folder puts back (:func:`recover_stale_sets`).

A failed run discards its staging folder, so the previous outputs stay; a later run in the folder removes staging
folders of killed runs. Readers check a file against its manifest with :func:`check_output_file`.
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from Engineering.errors import OutputError
from Engineering.outputs.files import describe_os_error, fsync_dir, write_bytes, write_error

log = logging.getLogger("imlatent")

MANIFEST = "output_manifest.json"
MANIFEST_FORMAT = 1
_SET_NAME = re.compile(r"^\.(?P<final>.+)\.(?P<kind>staging|old)-\d+-[0-9a-f]{8}$")
_CHUNK = 1 << 20
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


class OutputSet:
    """The staging folder of one published output folder (``<run>/Output`` or ``<run>/Output_<suffix>``)."""

    def __init__(self, final: Path) -> None:
        self.final = Path(final)
        self.staging = self.final.with_name(f".{self.final.name}.staging-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        self.published = False

    def open(self) -> Path:
        """Create the (empty) staging folder and return it; writers put the whole set there."""
        try:
            self.staging.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise write_error(self.staging, err, "cannot create the staging folder") from err
        return self.staging

    def rename_error(self, err: OutputError) -> OutputError:
        """``err`` with staging paths shown as the published names, and saying that nothing was replaced."""
        text = str(err).replace(str(self.staging), str(self.final))
        return OutputError(f"{text} (nothing was published: the previous {self.final.name}/ is unchanged)")

    def discard(self) -> None:
        """Remove the staging folder (a failed or interrupted run); the published folder is untouched."""
        shutil.rmtree(self.staging, ignore_errors=True)

    def publish(self, provenance: Mapping[str, Any] | None = None) -> Path:
        """Seal the staging folder (fsync, manifest last) and swap it in as :attr:`final`; return :attr:`final`."""
        try:
            files = _seal(self.staging, self.final)
            document = _manifest(self.final.name, files, provenance or {})
            write_bytes(self.staging / MANIFEST, (json.dumps(document, indent=1) + "\n").encode(), exclusive=True)
            for folder in sorted({p.parent for p in self.staging.rglob("*")} | {self.staging}, reverse=True):
                fsync_dir(folder)
            _swap_in(self.staging, self.final)
        except OutputError as err:
            self.discard()
            raise self.rename_error(err) from err
        except OSError as err:
            self.discard()
            raise self.rename_error(write_error(self.final, err, "cannot publish")) from err
        self.published = True
        return self.final


def _seal(staging: Path, final: Path) -> dict[str, dict[str, Any]]:
    """fsync every regular file below ``staging`` and return ``{relative path: {size, sha256}}``."""
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(staging.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        rel = path.relative_to(staging).as_posix()
        digest = hashlib.sha256()
        size = 0
        try:
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(_CHUNK), b""):
                    digest.update(block)
                    size += len(block)
                os.fsync(handle.fileno())
        except OSError as err:
            raise write_error(final / rel, err, "cannot flush") from err
        files[rel] = {"size": size, "sha256": digest.hexdigest()}
    return files


def _manifest(folder: str, files: dict[str, dict[str, Any]], provenance: Mapping[str, Any]) -> dict[str, Any]:
    run = {str(k).removeprefix("imlatent_"): v for k, v in provenance.items()}
    return {
        "format": MANIFEST_FORMAT,
        "folder": folder,
        "run_name": run.get("run_name", ""),
        "checkpoint": run.get("checkpoint", ""),
        "checkpoint_sha256": run.get("checkpoint_sha256", ""),
        "code_version": run.get("code_version", ""),
        "written_by": {"host": socket.gethostname(), "pid": os.getpid()},
        "finished": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "files": files,
    }


def _swap_in(staging: Path, final: Path) -> None:
    """Make ``staging`` the folder ``final``; the previous ``final`` (if any) is removed afterwards."""
    if not final.exists():
        os.rename(staging, final)
        fsync_dir(final.parent)
        return
    if not final.is_dir() or final.is_symlink():
        raise OutputError(f"{final} exists and is not a folder; expected the run's output folder")
    if _exchange(staging, final):
        old = staging  # now holds the previous set
    else:
        old = final.with_name(f".{final.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        os.rename(final, old)
        os.rename(staging, final)
    fsync_dir(final.parent)
    shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False where that is unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


# ---------------------------------------------------------------------------------------------------- recovery
def recover_stale_sets(run_dir: Path) -> list[str]:
    """Clean the staging folders of killed runs in ``run_dir`` and put back a set a killed swap left aside.

    Only call this while holding the run folder's lock. Returns what was done, one short phrase per entry.
    """
    if not run_dir.is_dir():
        return []
    done: list[str] = []
    entries = [(e, m) for e in sorted(run_dir.iterdir()) if (m := _SET_NAME.match(e.name)) and e.is_dir()]
    for entry, match in sorted(entries, key=lambda em: em[1]["kind"] != "old"):  # restore before removing
        final = run_dir / match["final"]
        if match["kind"] == "old" and not final.exists():
            os.rename(entry, final)
            done.append(f"restored {final.name}/ from {entry.name}")
        else:
            shutil.rmtree(entry, ignore_errors=True)
            done.append(f"removed {entry.name}")
    return done


# ---------------------------------------------------------------------------------------------------- readers
def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of ``folder``; :class:`OutputError` when missing or malformed."""
    path = Path(folder) / MANIFEST
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OutputError(
            f"{folder}: no {MANIFEST}; the output set is incomplete or not written by a test run"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise OutputError(f"{path}: unreadable ({err}); expected the JSON manifest of a complete output set") from None
    files = document.get("files") if isinstance(document, dict) else None
    if not isinstance(files, dict) or document.get("format") != MANIFEST_FORMAT:
        raise OutputError(f"{path}: not an output manifest of format {MANIFEST_FORMAT} with a 'files' table")
    return document


def _file_problem(folder: Path, rel: str, entry: Any, checksum: bool) -> str | None:
    path = folder / rel
    if not isinstance(entry, dict) or not isinstance(entry.get("size"), int):
        return f"{rel}: malformed manifest entry"
    if not path.is_file():
        return f"{rel}: listed in {MANIFEST} but missing"
    size = path.stat().st_size
    if size != entry["size"]:
        return f"{rel}: {size} bytes, the manifest says {entry['size']}"
    if checksum:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(_CHUNK), b""):
                digest.update(block)
        if digest.hexdigest() != entry.get("sha256"):
            return f"{rel}: content differs from the manifest (SHA-256)"
    return None


def verify_output_set(folder: Path, checksum: bool = True) -> list[str]:
    """Why ``folder`` is not a complete published output set (empty list: it is one).

    Checks: not a staging folder, a well-formed manifest, every listed file present with its size (and SHA-256
    with ``checksum``), and no file that the manifest does not list.
    """
    folder = Path(folder)
    if _SET_NAME.match(folder.name):
        return [f"{folder.name} is the unpublished staging folder of a run that was killed or is still writing"]
    if not folder.is_dir():
        return [f"{folder}: no such folder"]
    try:
        files = read_manifest(folder)["files"]
    except OutputError as err:
        return [str(err)]
    problems = [p for rel, entry in sorted(files.items()) if (p := _file_problem(folder, rel, entry, checksum))]
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {MANIFEST}
    problems += [f"{rel}: not part of the set its manifest lists" for rel in sorted(present - set(files))]
    return problems


def check_output_file(path: Path) -> None:
    """Before reading a result file: refuse it unless it belongs to a complete output set, or warn when unknown.

    A file in a staging folder, or one whose size or checksum disagrees with the manifest beside it, is an
    :class:`OutputError`. A file without a manifest (written by the original pipeline, another tool or an older
    version) is read after a one-line warning, since nothing says whether its set was complete.
    """
    path = Path(path)
    folder = path.parent
    if _SET_NAME.match(folder.name):
        raise OutputError(
            f"{path} lies in {folder.name}, the unpublished staging folder of a run that was killed or is still "
            "writing; expected a file of a published output folder"
        )
    if not (folder / MANIFEST).exists():
        log.warning("%s: no %s beside it, so it is not known to come from a complete output set", path, MANIFEST)
        return
    files = read_manifest(folder)["files"]
    rel = path.name
    if rel not in files:
        raise OutputError(f"{path}: not listed in {folder / MANIFEST}; expected a file of the published set")
    try:
        problem = _file_problem(folder, rel, files[rel], checksum=True)
    except OSError as err:
        raise OutputError(f"{path}: cannot be read ({describe_os_error(err)})") from None
    if problem:
        raise OutputError(f"{path}: {problem.split(': ', 1)[1]}; the output set is not the one its run published")
