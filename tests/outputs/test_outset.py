"""Output folders are published as whole sets; write errors are one line; readers trust complete sets only."""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from Engineering.errors import OutputError
from Engineering.outputs import outset as outset_mod
from Engineering.outputs.files import atomic_write_bytes, remove_stale_temporaries, write_bytes
from Engineering.outputs.outset import (
    MANIFEST,
    OutputSet,
    check_output_file,
    recover_stale_sets,
    verify_output_set,
)

KEY = "1000011/20208/2_0/primary_LAX_4Ch_transverse_0"


def _publish(final: Path, files: dict[str, bytes], run: str = "r1") -> dict:
    outset = OutputSet(final)
    staging = outset.open()
    for rel, data in files.items():
        atomic_write_bytes(staging / rel, data)
    outset.publish({"imlatent_run_name": run, "imlatent_checkpoint": "/x/last.ckpt"})
    return json.loads((final / MANIFEST).read_text())


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_publish_replaces_the_whole_set_and_drops_stale_panels(tmp_path: Path) -> None:
    final = tmp_path / "Output"
    _publish(final, {"emb.h5": b"old", "recon.h5": b"old recon", "panels/a.png": b"p"})
    manifest = _publish(final, {"emb.h5": b"new emb"}, run="r2")
    assert sorted(p.relative_to(final).as_posix() for p in final.rglob("*")) == ["emb.h5", MANIFEST]
    assert manifest["run_name"] == "r2" and manifest["checkpoint"] == "/x/last.ckpt"
    assert manifest["files"] == {"emb.h5": {"size": 7, "sha256": manifest["files"]["emb.h5"]["sha256"]}}
    assert verify_output_set(final) == [] and _hidden(tmp_path) == []


def test_fallback_swap_without_rename_exchange(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(outset_mod, "_exchange", lambda a, b: False)  # e.g. NFS
    final = tmp_path / "Output"
    _publish(final, {"emb.h5": b"old"})
    _publish(final, {"emb.h5": b"new"})
    assert (final / "emb.h5").read_bytes() == b"new" and _hidden(tmp_path) == []


def test_published_files_get_the_umask_mode(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        _publish(tmp_path / "Output", {"emb.h5": b"x", "panels/a.png": b"y"})
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "Output").rglob("*") if p.is_file()}
    assert modes == {"emb.h5": 0o640, "a.png": 0o640, MANIFEST: 0o640}


def test_write_error_is_one_line_and_the_previous_set_stays(tmp_path: Path, monkeypatch) -> None:
    final = tmp_path / "Output"
    before = _publish(final, {"emb.h5": b"old"})
    outset = OutputSet(final)
    staging = outset.open()
    real_write = os.write

    def full_disk(fd: int, data) -> int:
        if len(data) > 100:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(OutputError) as caught:
        atomic_write_bytes(staging / "recon.h5", b"r" * 1000)
    monkeypatch.undo()
    assert str(outset.rename_error(caught.value)) == (
        f"cannot write {final}/recon.h5: No space left on device (nothing was published: the previous Output/ is "
        "unchanged)"
    )
    assert list(staging.iterdir()) == []  # the partial temporary file is gone
    outset.discard()
    assert json.loads((final / MANIFEST).read_text()) == before and _hidden(tmp_path) == []


def test_h5_writer_reports_a_full_disk_as_one_error(tmp_path: Path, monkeypatch) -> None:
    """libhdf5 never sees the disk: the image is written by plain os calls, whose ENOSPC becomes OutputError."""
    from Engineering.outputs import write_results_h5

    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left")))
    with pytest.raises(OutputError, match=r"cannot write .*emb\.h5.*: No space left"):
        write_results_h5(tmp_path / "emb.h5", {KEY: np.ones((1, 1, 1, 2))})
    monkeypatch.setattr(os, "write", real_write)
    assert list(tmp_path.iterdir()) == []


def test_write_bytes_names_the_file_when_the_folder_is_missing(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"cannot write .*nowhere/emb\.h5: No such file or directory"):
        write_bytes(tmp_path / "nowhere" / "emb.h5", b"x")


def test_stale_staging_and_temporaries_are_cleaned(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _publish(run / "Output", {"emb.h5": b"kept"})
    (run / ".Output.staging-123-0123abcd" / "panels").mkdir(parents=True)
    (run / ".Output_fullDS.staging-9-deadbeef").mkdir()
    (run / "Checkpoints").mkdir()
    (run / "Checkpoints" / ".last.ckpt.x1y2.tmp").write_bytes(b"half")
    (run / "Checkpoints" / "last.ckpt").write_bytes(b"whole")
    done = recover_stale_sets(run)
    removed = remove_stale_temporaries([run, run / "Checkpoints"])
    assert len(done) == 2 and [p.name for p in removed] == [".last.ckpt.x1y2.tmp"]
    assert _hidden(run) == [] and os.listdir(run / "Checkpoints") == ["last.ckpt"]
    assert verify_output_set(run / "Output") == []


def test_a_set_left_aside_by_a_killed_fallback_swap_is_put_back(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _publish(run / "Output", {"emb.h5": b"old"})
    os.rename(run / "Output", run / ".Output.old-77-0123abcd")  # killed between the two renames
    (run / ".Output.staging-77-0123abce").mkdir()
    assert recover_stale_sets(run)[0].startswith("restored Output/")
    assert verify_output_set(run / "Output") == [] and _hidden(run) == []


def test_verify_names_what_makes_a_set_incomplete(tmp_path: Path) -> None:
    final = tmp_path / "Output"
    _publish(final, {"emb.h5": b"abc", "recon.h5": b"def"})
    (final / "recon.h5").write_bytes(b"DEF")  # same size, other content
    (final / "stray.png").write_bytes(b"x")
    problems = verify_output_set(final)
    assert problems == [
        "recon.h5: content differs from the manifest (SHA-256)",
        "stray.png: not part of the set its manifest lists",
    ]
    (final / MANIFEST).unlink()
    assert MANIFEST in verify_output_set(final)[0]
    assert "staging folder" in verify_output_set(tmp_path / ".Output.staging-1-0123abcd")[0]


def test_readers_refuse_incomplete_sets_and_warn_about_unknown_ones(tmp_path: Path, caplog) -> None:
    final = tmp_path / "Output"
    _publish(final, {"emb.h5": b"abc"})
    check_output_file(final / "emb.h5")  # complete: silent
    (final / "emb.h5").write_bytes(b"abcd")
    with pytest.raises(OutputError, match=r"emb\.h5: 4 bytes, the manifest says 3"):
        check_output_file(final / "emb.h5")
    staged = tmp_path / ".Output.staging-5-0123abcd"
    staged.mkdir()
    (staged / "emb.h5").write_bytes(b"x")
    with pytest.raises(OutputError, match="unpublished staging folder"):
        check_output_file(staged / "emb.h5")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "emb.h5").write_bytes(b"x")
    with caplog.at_level(logging.WARNING, logger="imlatent"):
        check_output_file(tmp_path / "other" / "emb.h5")
    assert f"no {MANIFEST} beside it" in caplog.text


def test_export_tool_refuses_an_emb_h5_that_differs_from_its_manifest(tmp_path: Path) -> None:
    from Engineering.outputs import write_results_h5
    from Engineering.outputs.latent_tables import read_emb_arrays

    final = tmp_path / "Output"
    outset = OutputSet(final)
    write_results_h5(outset.open() / "emb.h5", {KEY: np.ones((1, 1, 1, 2))})
    outset.publish()
    assert list(read_emb_arrays(final / "emb.h5")) == [KEY]
    write_results_h5(final / "emb.h5", {KEY: np.zeros((1, 1, 1, 2))})  # replaced behind the manifest's back
    with pytest.raises(OutputError, match="content differs from the manifest"):
        read_emb_arrays(final / "emb.h5")
