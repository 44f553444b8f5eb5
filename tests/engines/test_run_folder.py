"""The run folder lock and the clean-up of failed runs, on a bare RunFolder (the executor tests are in
tests/reliability/test_run_faults.py)."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from Engineering.configuration.naming import RunPaths
from Engineering.engines.run_folder import LOCK_NAME, RunFolder, RunLock
from Engineering.errors import CheckpointError, RunFolderBusyError


def _paths(root: Path, tb: bool = True) -> RunPaths:
    run = root / "results" / "run1"
    return RunPaths(
        save_path=run.parent,
        run_dir=run,
        checkpoints=run / "Checkpoints",
        output=run / "Output",
        log_file=run / "CaptainsLog.log",
        tb_dir=root / "results_tb" / "run1" if tb else None,
    )


@pytest.fixture(autouse=True)
def _own_log_handlers():
    root = logging.getLogger("imlatent")
    saved = list(root.handlers)
    yield
    root.handlers = saved


def test_second_lock_names_the_holder(tmp_path: Path) -> None:
    first = RunLock(tmp_path)
    assert first.acquire() is None
    with pytest.raises(RunFolderBusyError) as caught:
        RunLock(tmp_path).acquire()  # another open file description: flock refuses it even in this process
    message = str(caught.value)
    assert f"host {socket.gethostname()}, PID {os.getpid()}, started " in message and str(tmp_path) in message
    first.release()
    again = RunLock(tmp_path)
    assert again.acquire() is None  # a released lock leaves no holder behind
    again.release()


def test_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    record = {"host": socket.gethostname(), "pid": pid, "started": "2026-01-01T00:00:00+00:00"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(record))
    lock = RunLock(tmp_path)
    previous = lock.acquire()
    assert previous is not None and previous.pid == pid and not previous.alive()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()


def test_failure_in_a_new_run_folder_removes_everything_it_created(tmp_path: Path) -> None:
    paths = _paths(tmp_path)
    folder = RunFolder(paths)
    with pytest.raises(CheckpointError), folder.guard():
        folder.open()
        paths.checkpoints.mkdir()
        paths.tb_dir.mkdir(parents=True)  # type: ignore[union-attr]
        folder.replace_file(paths.run_dir / "resolved_config.yaml", lambda p: p.write_text("x: 1\n"))
        folder.output_set(paths.output)
        raise CheckpointError("no checkpoint in run1")
    assert sorted(os.listdir(tmp_path)) == []  # results/, results_tb/, the run folder and its staging folder


def test_failure_in_an_existing_run_folder_keeps_the_log_and_restores_what_it_replaced(tmp_path: Path) -> None:
    paths = _paths(tmp_path)
    (paths.checkpoints).mkdir(parents=True)
    (paths.checkpoints / "last.ckpt").write_bytes(b"weights")
    (paths.run_dir / "resolved_config.yaml").write_text("old: true\n")
    (paths.tb_dir / "version_0").mkdir(parents=True)  # type: ignore[union-attr]
    folder = RunFolder(paths)
    with pytest.raises(CheckpointError), folder.guard():
        folder.open()
        folder.replace_file(paths.run_dir / "resolved_config.yaml", lambda p: p.write_text("new: true\n"))
        (paths.run_dir / "auto_lr.csv").write_text("lr,loss\n")
        (paths.tb_dir / "version_1").mkdir()  # type: ignore[union-attr]
        raise CheckpointError("bad --preweights_path x.ckpt")
    assert sorted(os.listdir(paths.run_dir)) == [LOCK_NAME, "CaptainsLog.log", "Checkpoints", "resolved_config.yaml"]
    assert (paths.run_dir / "resolved_config.yaml").read_text() == "old: true\n"
    assert os.listdir(paths.tb_dir) == ["version_0"]  # type: ignore[arg-type]
    last = paths.log_file.read_text().splitlines()[-1]
    assert last.endswith("ERROR imlatent: error: bad --preweights_path x.ckpt")
    assert (paths.run_dir / LOCK_NAME).read_text() == ""  # released


def test_failure_after_a_checkpoint_keeps_the_run(tmp_path: Path) -> None:
    paths = _paths(tmp_path, tb=False)
    folder = RunFolder(paths)
    with pytest.raises(KeyboardInterrupt), folder.guard():
        folder.open()
        paths.checkpoints.mkdir()
        (paths.checkpoints / "epoch=0-step=3.ckpt").write_bytes(b"w")
        raise KeyboardInterrupt
    assert (paths.checkpoints / "epoch=0-step=3.ckpt").is_file()
    assert paths.log_file.read_text().splitlines()[-1].endswith("ERROR imlatent: interrupted")


def test_preemption_exit_is_not_a_failure(tmp_path: Path) -> None:
    paths = _paths(tmp_path, tb=False)
    folder = RunFolder(paths)
    with pytest.raises(SystemExit), folder.guard():
        folder.open()
        (paths.run_dir / "resolved_config.yaml").write_text("x: 1\n")
        raise SystemExit  # Lightning's SIGTERMException: last.ckpt saved, exit status 0
    assert (paths.run_dir / "resolved_config.yaml").is_file() and not folder.lock.held


def test_other_ranks_neither_lock_nor_clean(tmp_path: Path) -> None:
    paths = _paths(tmp_path, tb=False)
    holder = RunFolder(paths)
    holder.open()
    child = RunFolder(paths, rank=1)  # a DDP child: must not block on rank 0's lock
    with pytest.raises(ValueError), child.guard():
        child.open()
        raise ValueError("rank 1 failed")
    assert paths.run_dir.is_dir() and holder.lock.held
    holder.close()


def test_captainslog_write_error_falls_back_to_the_console(tmp_path: Path, caplog) -> None:
    import errno

    from Engineering.engines.run_folder import attach_captains_log

    handler = attach_captains_log(tmp_path / "CaptainsLog.log")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    handler.stream.write = full  # type: ignore[attr-defined]
    with caplog.at_level(logging.INFO, logger="imlatent"):
        logging.getLogger("imlatent").info("epoch 3 done")
    assert handler not in logging.getLogger("imlatent").handlers
    assert "CaptainsLog.log cannot be written any more; the log continues on the console only" in caplog.text
