"""NIfTI converter: axis order, CSV and regex mapping, bad files skipped, CLI errors."""

from __future__ import annotations

import importlib.util
import json

import h5py
import nibabel as nib
import numpy as np
import pytest

from Engineering.data.convert.nifti import convert_nifti, map_from_csv, map_from_regex, to_5d
from Engineering.errors import ConfigError, DataError, run_guarded


def save(path, data):
    nib.save(nib.Nifti1Image(data, np.diag([1.5, 1.5, 8.0, 1.0])), path)
    return path


def test_axis_order():
    x = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)  # (x, y, z, t)
    y = to_5d(x)
    assert y.shape == (1, 5, 4, 2, 3) and y[0, 4, 3, 1, 2] == x[1, 2, 3, 4]
    assert to_5d(np.zeros((2, 3))).shape == (1, 1, 1, 2, 3)
    with pytest.raises(ValueError, match="has 6 dimensions"):
        to_5d(np.zeros((1,) * 6))


def test_regex_mapping_bad_file_and_bad_key(tmp_path):
    vol = np.arange(4 * 6 * 3, dtype=np.int16).reshape(4, 6, 3)
    save(tmp_path / "1000011_2_0_T1.nii.gz", vol)
    save(tmp_path / "1000022_2_0_T1.nii.gz", np.ones((4, 6, 3, 2), np.float32))
    (tmp_path / "1000033_2_0_T1.nii.gz").write_bytes(b"garbage")
    mapping = map_from_regex(tmp_path, r"(?P<patient>\d+)_(?P<instance>\d_\d)", "20252", "x", "primary_T1")
    assert [t for _, t in mapping][0] == ("1000011", "20252", "2_0", "primary_T1")
    report = convert_nifti(mapping, tmp_path / "d.h5", progress=False)
    with h5py.File(tmp_path / "d.h5", "r") as f:
        ds = f["1000011/20252/2_0/primary_T1"]
        assert ds.shape == (1, 1, 3, 4, 6) and ds.dtype == np.int16 and ds.attrs["max_val"] == vol.max()
        assert json.loads(ds.attrs["DICOMHeader"])["mag_0"]["pixdim"] == "[1.5, 1.5, 8.0, 1.0, 1.0]"
        assert f["1000022/20252/2_0/primary_T1"].shape == (1, 2, 3, 4, 6)
        assert f["1000011/20252/2_0"].attrs["n_series"] == 1
    assert report.series == 2 and "1000033_2_0_T1.nii.gz" in report.skipped[0][0]
    assert "unreadable NIfTI" in report.skipped[0][1]


def test_csv_mapping_and_errors(tmp_path):
    save(tmp_path / "a.nii", np.ones((4, 4, 2), np.float32))
    (tmp_path / "map.csv").write_text("path,patient,field,instance,key\na.nii,P1,1,2_0,primary\na.nii,P1,1,2_0,seg\n")
    report = convert_nifti(map_from_csv(tmp_path / "map.csv"), tmp_path / "d.h5", progress=False)
    assert report.series == 1 and "expected non-empty patient/field/instance" in report.skipped[0][1]
    (tmp_path / "bad.csv").write_text("path,patient\na.nii,P1\n")
    with pytest.raises(ConfigError, match="lacks column\\(s\\) field, instance, key"):
        map_from_csv(tmp_path / "bad.csv")
    with pytest.raises(DataError, match="no NIfTI series converted \\(0 file\\(s\\) mapped"):
        convert_nifti([], tmp_path / "e.h5", progress=False)
    with pytest.raises(ConfigError, match="has no named group \\(\\?P<patient>"):
        map_from_regex(tmp_path, r"\d+", "0", "0_0", "primary")


def test_cli_smoke(tmp_path, repo_root, capsys):
    spec = importlib.util.spec_from_file_location("convert_nifti", repo_root / "Executors" / "convert_nifti.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    save(tmp_path / "P9.nii.gz", np.ones((4, 4, 2), np.uint8))
    args = ["--in", str(tmp_path), "--out", str(tmp_path / "d.h5"), "--no_progress"]
    assert run_guarded(module.main, [*args, "--pattern", r"(?P<patient>P\d)"]) == 0
    assert "wrote 1 series in 1 instance group(s)" in capsys.readouterr().out
    assert run_guarded(module.main, args) == 2
    assert "give exactly one of --map CSV or --in FOLDER --pattern REGEX" in capsys.readouterr().err
