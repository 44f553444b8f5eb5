"""validate_h5: a clean demo file passes; contract breaks, fold problems and selection problems are reported; with a
JSON it counts what the executor counts (same defaults, same config YAML)."""

from __future__ import annotations

import importlib.util
import json

import h5py
import numpy as np
import pytest

from Engineering.configuration import resolve
from Engineering.data.datamodule import H5DataModule
from Engineering.data.demo import write_demo_dataset, write_series_file
from Engineering.data.folds import Fold, write_fold_csv
from Engineering.data.validate import validate
from Engineering.errors import run_guarded

SHIPPED = {
    "run_prefix": "v",
    "save_path": "unused",
    "DS_selected_primaries": ["LAX_4Ch_transverse"],
    "DS_sanity_filters": {"dim1": 4},
    "DS_multi_channel": False,
    "DS_split_volume": False,
    "DS_split_time": False,
    "DS_slice_dim": 1,
}


@pytest.fixture
def tool(repo_root):
    spec = importlib.util.spec_from_file_location("validate_h5", repo_root / "Executors" / "validate_h5.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_demo_passes_with_json_and_yaml(tmp_path, repo_root, tool, capsys):
    paths = write_demo_dataset(tmp_path / "d", n_patients=6, frames=4, size=8)
    run = {"datadir": str(paths.datadir), "foldCSV": "folds.csv", **SHIPPED}
    (tmp_path / "run.json").write_text(json.dumps(run))
    argv = ["--json", str(tmp_path / "run.json"), "--config", str(repo_root / "Configs" / "config_v1.yaml")]
    assert run_guarded(tool, argv) == 0
    out = capsys.readouterr().out
    assert "0 error(s)" in out and "selection train:" in out and "selection test:" in out
    assert "6 patient(s), 11 candidate series" in out


def test_without_config_counts_what_the_executor_counts(tmp_path, tool, capsys):
    """Issue 15 item 8: without --config the executor's default YAML applies (every_primary false), so the repeat
    acquisition _1 is not counted: 8 training samples on the demo data, as main_diffAE.py reads."""
    paths = write_demo_dataset(tmp_path / "d", n_patients=12, frames=4, size=8, n_folds=5, seed=1701)
    run = {"datadir": str(paths.datadir), "foldCSV": "folds.csv", **SHIPPED}
    (tmp_path / "run.json").write_text(json.dumps(run))
    assert run_guarded(tool, ["--json", str(tmp_path / "run.json")]) == 0
    out = capsys.readouterr().out
    rc = resolve("diffae", ["--datajson_path", str(tmp_path / "run.json")])
    dm = H5DataModule.from_config(rc.cfg, merge_train_val=False)
    dm.build("fit")
    assert f"selection train: {len(dm.train_ds)} sample(s)" in out
    assert any(k.startswith(paths.patient_ids[3]) for k, _ in dm.train_ds.entries)  # the patient with the repeat
    assert all(not k.endswith("_1") for k, _ in dm.train_ds.entries)


def test_contract_breaks_are_errors(tmp_path, tool, capsys):
    good = np.ones((1, 4, 1, 8, 8), np.float32)
    nan = good.copy()
    nan[0, 1, 0, 2, 2] = np.nan
    h5 = write_series_file(
        tmp_path / "bad.h5",
        {"P1/1/2_0/primary_0": good, "P2/1/2_0/primary_0": nan, "P3/1/primary_0": good, "P4/1/2_0/primary_x": good[0]},
        minmax_attrs=False,
    )
    with h5py.File(h5, "a") as f:
        f.create_group("P5/1/2_0")
    assert run_guarded(tool, [str(h5)]) == 1
    out = capsys.readouterr().out
    assert f"{h5}: series P2/1/2_0/primary_0 holds non-finite voxels (NaN or inf)" in out
    assert (
        f"{h5}: series P3/1/primary_0 is at depth 3; expected series only at patient/field/instance/series (4)" in out
    )
    assert f"{h5}: series P4/1/2_0/primary_x has shape (4, 1, 8, 8); expected a 5-D array" in out
    assert "P1/1/2_0/primary_0: no min_val/max_val/seriesID/DICOMHeader/seriesDesc attribute(s)" in out
    assert "WARNING [empty group]" in out and "P5/1/2_0: no datasets below this group" in out


def test_fold_problems(tmp_path):
    h5 = write_series_file(tmp_path / "d.h5", {f"{p}/1/2_0/primary_0": np.ones((1, 1, 1, 4, 4)) for p in "ABCD"})
    csv = write_fold_csv(tmp_path / "f.csv", [Fold(["A", "B", "A"], ["B"], ["C", "Z"]), Fold(["X"], ["A"], ["Y"])])
    report = validate(h5, fold_csv=csv)
    text = report.render()
    assert "fold 0: 1 ID(s) in both train and val, e.g. B" in text
    assert "fold 0 train: ID(s) listed twice: A" in text
    assert "fold 0 test: 1 ID(s) not in the file, e.g. Z" in text
    assert "fold 1 train: none of its 1 ID(s) is in the file (e.g. X)" in text
    assert len(report.errors) == 3 and len([w for w in report.warnings if w[0].startswith("fold")]) == 2


def _run_json(tmp_path, h5, **ds):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"run_prefix": "v", "save_path": "unused", "datadir": str(h5.parent),
                                "datafile": h5.name, "foldCSV": 0, **ds}))  # fmt: skip
    return str(path)


def test_selection_problems_and_missing_file(tmp_path, tool, capsys):
    h5 = write_series_file(tmp_path / "d.h5", {"A/1/2_0/primary_T1_0": np.ones((1, 1, 3, 4, 4), np.int16)})
    assert run_guarded(tool, ["--json", _run_json(tmp_path, h5, DS_selected_primaries=["LAX_4Ch_transverse"])]) == 1
    assert "entry 'primary_LAX_4Ch_transverse' matches no series in the file" in capsys.readouterr().out
    assert run_guarded(tool, ["--json", _run_json(tmp_path, h5, DS_bogus=1)]) == 2
    assert "unknown dataset option(s) DS_bogus" in capsys.readouterr().err
    assert run_guarded(tool, [str(tmp_path / "none.h5")]) == 2
    assert "HDF5 file" in capsys.readouterr().err
