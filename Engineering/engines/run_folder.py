"""One run per run folder, and failed runs leave nothing new behind.

:class:`RunFolder` is the run's hold on ``<save_path>/<run_name>/``:

* **Lock.** Rank 0 takes an exclusive ``flock`` on ``<run>/.imlatent_run.lock`` right after creating the folder and
  before writing anything else. The file records host, PID and start time; a second run into the folder stops at
  once with one line naming them. The kernel drops the lock when its process dies, so a lock left by a killed run is
  simply taken over, with a warning naming the dead holder. Other ranks (DDP children, srun tasks) never lock: only
  rank 0 writes the run folder.
* **Stale leftovers.** Holding the lock, rank 0 removes the staging folders and hidden ``*.tmp`` files that killed
  runs left (see :mod:`Engineering.outputs.outset` and :mod:`Engineering.outputs.files`).
* **Failure.** A run that fails (an exception, Ctrl-C; not a SIGTERM pre-emption, which exits 0) appends its error
  line to ``CaptainsLog.log``, discards its unpublished outputs and, when it wrote no checkpoint, removes everything
  it created: the whole run folder (and TensorBoard folder) when they were new, else the new entries, and it puts back
  a ``resolved_config.yaml`` it overwrote. A run folder that the failed run created itself is removed with its
  CaptainsLog, so the error line is then only on the console. A run that did write checkpoints keeps them: they
  resume.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import logging
import os
import shutil
import socket
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from Engineering.configuration.naming import RunPaths
from Engineering.errors import ImLatentError, OutputError, RunFolderBusyError, error_line
from Engineering.outputs.files import atomic_write_bytes, remove_stale_temporaries, write_error
from Engineering.outputs.outset import OutputSet, recover_stale_sets

log = logging.getLogger("imlatent")

LOCK_NAME = ".imlatent_run.lock"
_NO_FLOCK = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL}
_READ_TRIES = 20  # a holder writes its details right after locking: wait up to 20 x 50 ms to read them


# --------------------------------------------------------------------------------------------------------- lock
@dataclass(frozen=True)
class LockHolder:
    """Who holds (or held) a run folder's lock."""

    host: str
    pid: int
    started: str

    @classmethod
    def me(cls) -> LockHolder:
        return cls(socket.gethostname(), os.getpid(), _dt.datetime.now().astimezone().isoformat(timespec="seconds"))

    @classmethod
    def parse(cls, text: str) -> LockHolder | None:
        try:
            data = json.loads(text)
            return cls(str(data["host"]), int(data["pid"]), str(data["started"]))
        except (ValueError, TypeError, KeyError):
            return None

    def describe(self) -> str:
        return f"host {self.host}, PID {self.pid}, started {self.started}"

    def is_me(self) -> bool:
        return (self.host, self.pid) == (socket.gethostname(), os.getpid())

    def alive(self) -> bool:
        """Whether the holder still runs; True when that cannot be told (another host)."""
        if self.host != socket.gethostname():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


class RunLock:
    """An exclusive, non-blocking ``flock`` on ``<folder>/.imlatent_run.lock`` that records its holder."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> LockHolder | None:
        """Take the lock. Returns the holder a dead run left recorded (None normally); busy → RunFolderBusyError."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as err:
            raise write_error(self.path, err, "cannot create the run folder lock") from err
        try:
            previous = self._lock(fd)
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(vars(LockHolder.me())).encode(), 0)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return previous if previous is not None and not previous.is_me() else None

    def _lock(self, fd: int) -> LockHolder | None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise self._busy(_read_holder(fd, wait=True)) from None
        except OSError as err:
            if err.errno not in _NO_FLOCK:
                raise write_error(self.path, err, "cannot lock") from err
            # a file system without locks: fall back to the recorded holder (weaker, but better than nothing)
            holder = _read_holder(fd, wait=False)
            if holder is not None and not holder.is_me() and holder.alive():
                hint = f"; this file system has no locks: delete {self.path} if that run is gone"
                raise self._busy(holder, hint) from err
            log.warning("%s: the file system does not support locks; concurrent runs are not prevented", self.path)
            return holder
        return _read_holder(fd, wait=False)

    def _busy(self, holder: LockHolder | None, hint: str = "") -> RunFolderBusyError:
        who = holder.describe() if holder is not None else "a run that has not recorded itself yet"
        return RunFolderBusyError(
            f"run folder {self.path.parent} is in use by another run ({who}){hint}; wait for it to end, or give this "
            "run another --trainID/--run_prefix"
        )

    def release(self) -> None:
        """Clear the holder record and unlock (the file stays: removing it could let two runs lock two files)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _read_holder(fd: int, wait: bool) -> LockHolder | None:
    for _ in range(_READ_TRIES if wait else 1):
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        if text:
            return LockHolder.parse(text)
        if wait:
            time.sleep(0.05)
    return None


# --------------------------------------------------------------------------------------------------------- folder
Snapshot = dict[str, tuple[int, int]]


def _make_dirs(folder: Path) -> list[Path]:
    """``mkdir -p folder``; returns the folders it created, outermost first."""
    missing = []
    probe = folder
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(folder, err, "cannot create the run folder") from err
    return list(reversed(missing))


def _snapshot(root: Path) -> Snapshot:
    """``relative path → (size, mtime_ns)`` of everything below ``root``, not descending into output folders."""
    found: Snapshot = {}
    if not root.is_dir():
        return found
    for current, dirs, files in os.walk(root):
        here = Path(current)
        if here == root:
            dirs[:] = [d for d in dirs if not (d.startswith("Output") or d.startswith("."))]
        for name in dirs + files:
            path = here / name
            with contextlib.suppress(OSError):
                st = path.lstat()
                found[path.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    return found


def _is_checkpoint(rel: str) -> bool:
    """A checkpoint file, or a file inside a (DeepSpeed) checkpoint folder; hidden tuner temporaries are not."""
    return any(part.endswith(".ckpt") and not part.startswith(".") for part in rel.split("/"))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _remove_new_entries(root: Path, before: Snapshot, keep: set[str]) -> list[str]:
    """Remove what appeared below ``root`` since ``before`` (outermost new paths only); returns them."""
    removed: list[str] = []
    for rel in sorted(set(_snapshot(root)) - set(before) - keep):
        if any(rel.startswith(done + "/") for done in removed):
            continue
        _remove(root / rel)
        removed.append(rel)
    return removed


class RunFolder:
    """The run folder of one invocation: lock, CaptainsLog, output sets, and clean-up after a failure."""

    def __init__(self, paths: RunPaths, rank: int = 0) -> None:
        self.paths = paths
        self.run_dir = Path(paths.run_dir)
        self.writer = rank == 0
        self.lock = RunLock(self.run_dir)
        self._created: list[Path] = []
        self._before: Snapshot | None = None
        self._tb: tuple[bool, bool, Snapshot] | None = None
        self._restore: dict[Path, tuple[bytes, os.stat_result] | None] = {}
        self._sets: list[OutputSet] = []
        self._handler: logging.Handler | None = None

    # ------------------------------------------------------------------ start
    def open(self) -> None:
        """Create the run folder and, on rank 0, lock it, start the CaptainsLog entry and clean stale leftovers."""
        created = _make_dirs(self.run_dir)
        if not self.writer:
            return
        previous = self.lock.acquire()  # busy: nothing is removed, the folder belongs to the running holder
        self._created = created
        self._before = None if created else _snapshot(self.run_dir)
        tb = self.paths.tb_dir
        if tb is not None:
            self._tb = (tb.parent.exists(), tb.exists(), _snapshot(tb))
        self._handler = attach_captains_log(self.paths.log_file)
        if previous is not None:
            log.warning(
                "run folder %s: taking over the lock left by a run that ended without releasing it (%s)",
                self.run_dir,
                previous.describe(),
            )
        cleaned = recover_stale_sets(self.run_dir)
        folders = [self.run_dir, self.paths.checkpoints, *[p for p in self.run_dir.glob("Output*") if p.is_dir()]]
        cleaned += [f"removed {p.relative_to(self.run_dir)}" for p in remove_stale_temporaries(folders)]
        if cleaned:
            log.warning("run folder %s: cleaned up after a killed run: %s", self.run_dir, "; ".join(cleaned))

    # ------------------------------------------------------------------ writing
    def replace_file(self, path: Path, write: Callable[[Path], Any]) -> None:
        """``write(path)`` on rank 0, remembering the previous content so that a failed run can put it back."""
        path = Path(path)
        if path not in self._restore:
            self._restore[path] = (path.read_bytes(), path.stat()) if path.is_file() else None
        try:
            write(path)
        except OSError as err:
            raise write_error(path, err) from err

    def output_set(self, final: Path) -> OutputSet:
        """A new staging folder for ``final`` (rank 0); discarded unless published."""
        outset = OutputSet(final)
        outset.open()
        self._sets.append(outset)
        return outset

    # ------------------------------------------------------------------ end
    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Run the body; on failure record the error and clean up (see the module doc), then re-raise."""
        try:
            yield
        except BaseException as err:
            if isinstance(err, SystemExit) and err.code in (0, None):  # SIGTERM pre-emption: a clean stop
                self.close()
            else:
                self.fail(err)
            raise

    def fail(self, err: BaseException) -> None:
        """Record ``err`` as the last CaptainsLog line and remove what this failed run created."""
        if not self.lock.held:
            return
        for outset in self._sets:
            if not outset.published:
                outset.discard()
        if not self._productive():
            removed = self._remove_created()
            if removed:
                log.info("the failed run left nothing behind: removed %s", ", ".join(removed))
        if self._handler is not None:  # last, and the file only: the console shows it through run_guarded
            line = error_line(err)
            self._handler.handle(log.makeRecord(log.name, logging.ERROR, __file__, 0, line, (), None))
        self.close()

    def close(self) -> None:
        """Detach the CaptainsLog handler and release the lock (end of run)."""
        if self._handler is not None:
            logging.getLogger("imlatent").removeHandler(self._handler)
            self._handler.close()
            self._handler = None
        self.lock.release()

    def _productive(self) -> bool:
        """Whether the run published outputs or wrote a checkpoint (those stay, also after a failure)."""
        if any(outset.published for outset in self._sets):
            return True
        before = self._before or {}  # a new run folder: every checkpoint in it is this run's
        now = _snapshot(self.run_dir)
        return any(_is_checkpoint(rel) and before.get(rel) != stamp for rel, stamp in now.items())

    def _remove_created(self) -> list[str]:
        removed: list[str] = []
        if self._before is None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            removed.append(str(self.run_dir))
            for folder in reversed(self._created[:-1]):  # parents it created, if nothing else went there since
                with contextlib.suppress(OSError):
                    folder.rmdir()
        else:
            keep = {LOCK_NAME, self.paths.log_file.name}
            removed += [str(self.run_dir / rel) for rel in _remove_new_entries(self.run_dir, self._before, keep)]
            for path, previous in self._restore.items():
                if previous is not None:
                    content, st = previous
                    with contextlib.suppress(ImLatentError, OSError):
                        atomic_write_bytes(path, content)
                        os.chmod(path, stat.S_IMODE(st.st_mode))
                        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        removed += self._remove_tensorboard()
        return removed

    def _remove_tensorboard(self) -> list[str]:
        tb = self.paths.tb_dir
        if tb is None or self._tb is None:
            return []
        root_existed, existed, before = self._tb
        removed = []
        if existed:
            removed = [str(tb / rel) for rel in _remove_new_entries(tb, before, set())]
        elif tb.exists():
            shutil.rmtree(tb, ignore_errors=True)
            removed = [str(tb)]
        if not root_existed and tb.parent.exists():  # the logger creates tblog_path before its run folder
            with contextlib.suppress(OSError):
                tb.parent.rmdir()
                removed.append(str(tb.parent))
        return removed


# --------------------------------------------------------------------------------------------------------- CaptainsLog
class _CaptainsLogHandler(logging.FileHandler):
    """A FileHandler that, when the disk is full, says so once on the console and stops instead of a traceback."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        logging.getLogger("imlatent").removeHandler(self)
        with contextlib.suppress(Exception):
            self.close()
        log.warning("%s cannot be written any more; the log continues on the console only", self.baseFilename)


def attach_captains_log(path: Path) -> logging.Handler:
    """Append a mission banner and every log record of this run to CaptainsLog.log; returns the handler."""
    root = logging.getLogger("imlatent")
    root.setLevel(logging.DEBUG)
    try:
        handler = _CaptainsLogHandler(path, mode="a", encoding="utf-8")
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror or err}") from err
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root.addHandler(handler)
    now = _dt.datetime.now()
    stardate = now.year * 1000 + now.timetuple().tm_yday + now.hour / 24
    root.info("======== NEW MISSION ======== Stardate %.2f Earthdate %s", stardate, now.strftime("%d/%m/%Y %H:%M:%S"))
    return handler
