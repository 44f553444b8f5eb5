"""Demo data generator: UKBB field-20208 layout, attributes, dtype, shapes, folds and the CLI."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import h5py
import numpy as np

from Engineering.data.demo import write_demo_dataset
from Engineering.data.folds import read_folds
from Engineering.data.h5dataset import H5SeriesDataset
from Engineering.data.options import DatasetOptions
from Engineering.errors import run_guarded
from Engineering.transforms import TransformOptions, build_transforms

SHIPPED = dict(
    every_primary=False,
    selected_primaries=["LAX_4Ch_transverse"],
    sanity_filters={"dim1": 6},
    multi_channel=False,
    split_volume=False,
    split_time=False,
    channel_dim=0,
    slice_dim=1,
)


def test_layout_and_attributes(tmp_path):
    paths = write_demo_dataset(tmp_path, n_patients=7, frames=6, size=16)
    assert paths.patient_ids[0] == "1000011" and all(len(p) == 7 for p in paths.patient_ids)
    with h5py.File(paths.data_h5, "r") as f:
        assert sorted(f.keys()) == paths.patient_ids
        group = f["1000011/20208/2_0"]
        assert {"patientDICOMID", "studyDICOMID", "studyDesc", "aet", "host", "date", "n_series"} <= set(group.attrs)
        assert len(group.attrs["date"]) == 8 and int(group.attrs["n_series"]) == 1
        ds = group["primary_LAX_4Ch_transverse_0"]
        assert ds.shape == (1, 6, 1, 16, 16) and ds.dtype == np.uint16
        data = ds[()]
        assert int(ds.attrs["min_val"]) == data.min() and int(ds.attrs["max_val"]) == data.max() <= 4095
        assert json.loads(ds.attrs["seriesID"]).keys() == {"mag_0"}
        header = json.loads(ds.attrs["DICOMHeader"])["mag_0"]
        assert header["0008|0008"].startswith("ORIGINAL\\PRIMARY\\M") and "0008|0081" in header
        assert int(header["0020|4000"].split(";")[1].split()[0]) > 0
        assert ds.attrs["seriesDesc"] == "CINE_segmented_LAX_4Ch"
        assert "1000022/20208/3_0" in f and "1000044/20208/2_0/primary_LAX_4Ch_transverse_1" in f
        assert f["1000055/20208/3_0/primary_LAX_4Ch_transverse_0"].shape[1] == 5
        assert np.var(data[0, :, 0], axis=0).max() > 0  # the heart beats


def test_shipped_options_one_tensor_per_visit(tmp_path):
    paths = write_demo_dataset(tmp_path, n_patients=7, frames=6, size=16)
    _, evaluate = build_transforms(
        TransformOptions(
            norm_type="zscore", zscore_mean="0.5", zscore_std="0.5", zscore_prenorm="minmaxvol", input_shape=(6, 16, 16)
        )
    )
    ds = H5SeriesDataset(paths.data_h5, None, DatasetOptions(**SHIPPED), evaluate)
    assert [k for k, _ in ds.entries] == paths.expected_keys
    assert len(ds) == 7 + 2  # every 2_0 visit plus the two good 3_0 visits; the repeat and 5-frame series are out
    assert all(ds[n]["inp"]["data"].shape == (1, 6, 16, 16) for n in range(len(ds)))


def test_reproducible_and_folds(tmp_path):
    a = write_demo_dataset(tmp_path / "a", n_patients=12, frames=6, size=16, seed=3)
    b = write_demo_dataset(tmp_path / "b", n_patients=12, frames=6, size=16, seed=3)
    assert a.folds_csv.read_text() == b.folds_csv.read_text()
    with h5py.File(a.data_h5, "r") as fa, h5py.File(b.data_h5, "r") as fb:
        key = a.expected_keys[-1]
        np.testing.assert_array_equal(fa[key][()], fb[key][()])
    fold = read_folds(a.folds_csv, 4)
    assert (len(fold.train), len(fold.val), len(fold.test)) == (7, 1, 4)
    assert sorted(fold.train + fold.val + fold.test) == a.patient_ids
    assert not list((tmp_path / "a").glob(".*tmp"))


def test_cli(tmp_path, repo_root, capsys):
    out = tmp_path / "cli_demo"
    result = subprocess.run(
        [
            sys.executable,
            "Executors/make_demo_data.py",
            "--out",
            str(out),
            "--patients",
            "3",
            "--frames",
            "4",
            "--size",
            "8",
        ],
        cwd=repo_root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (out / "data.h5").is_file() and (out / "folds.csv").is_file()
    table = (out / "phenotypes.tsv").read_text().splitlines()
    assert table[0].split("\t") == ["FID", "Age", "Sex"] and len(table) == 1 + 3  # one row per patient
    spec = importlib.util.spec_from_file_location("make_demo_data", repo_root / "Executors" / "make_demo_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert run_guarded(module.main, ["--out", str(out), "--frames", "1"]) == 2
    assert "imlatent: error: demo sizes" in capsys.readouterr().err
