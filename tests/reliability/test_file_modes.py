"""Files written through a temporary file get the usual permissions (``0o666 & ~umask``), not mkstemp's 0600.

Run under umask 027 (a common cluster setting: group may read, others may not), so a 0600 file would fail.
"""

from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from Engineering.configuration.resolve import ResolvedConfig, save_resolved
from Engineering.data.convert.writer import H5Writer, Series
from Engineering.data.demo import write_demo_dataset
from Engineering.data.folds import write_folds
from Engineering.data.index import save_cache
from Engineering.engines.reliability import atomic_torch_save
from Engineering.fileio import atomic_write, atomic_write_text, current_umask, temp_folder
from Engineering.hub.export import export_hf_folder

UMASK = 0o027


@pytest.fixture
def cluster_umask():
    old = os.umask(UMASK)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_current_umask_reads_without_changing(cluster_umask) -> None:
    assert current_umask() == UMASK and current_umask() == UMASK


def test_atomic_write_gives_the_umask_mode_even_to_writers_that_make_0600_files(tmp_path, cluster_umask) -> None:
    from safetensors.torch import save_file

    path = atomic_write(tmp_path / "a" / "w.safetensors", lambda t: save_file({"w": torch.zeros(1)}, str(t)))
    assert _mode(path) == 0o640  # safetensors alone writes 0600
    assert [p.name for p in path.parent.iterdir()] == ["w.safetensors"]  # no temporary file left


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path) -> None:
    path = atomic_write_text(tmp_path / "x.txt", "old")

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, fail)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_temp_folder_mode(tmp_path, cluster_umask) -> None:
    assert _mode(temp_folder(tmp_path / "out")) == 0o750  # mkdtemp would give 0700


def test_every_writer_through_a_temporary_file(tmp_path, cluster_umask) -> None:
    """resolved_config.yaml, fold CSV, converted data.h5, demo data.h5, index cache, checkpoint, exported folder."""
    rc = ResolvedConfig("diffae", argparse.Namespace(taskID=1), {}, {})
    save_resolved(rc, tmp_path / "run" / "resolved_config.yaml")
    write_folds(tmp_path / "folds.csv", [str(i) for i in range(10)], 2)
    series = Series("primary_x_0", np.zeros((1, 2, 1, 4, 4), np.float32), "x", {"mag_0": "u"}, {})
    with H5Writer(tmp_path / "conv" / "data.h5") as writer:
        writer.write_group("1/20208/2_0", {}, [series])
    write_demo_dataset(tmp_path / "demo", n_patients=2, frames=2, size=8, n_folds=1)
    save_cache(tmp_path / "cache" / "DSPaths.json", [("1/f/i/s", (0, 0, 0))])
    atomic_torch_save({"state_dict": {}}, tmp_path / "Checkpoints" / "last.ckpt")
    export_hf_folder({"w": torch.zeros(1)}, tmp_path / "hf", {"a": 1}, "card")
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"resolved_config.yaml", "folds.csv", "data.h5", "DSPaths.json", "last.ckpt"}
    assert {p.name for p in files} >= {"model.safetensors", "config.json", "README.md"}
    assert {str(p.relative_to(tmp_path)): _mode(p) for p in files} == {
        str(p.relative_to(tmp_path)): 0o640 for p in files
    }
    assert _mode(tmp_path / "hf") == 0o750
    assert not [p for p in tmp_path.rglob(".*") if p.name.endswith(".tmp")]
