"""Explorer parts that need no trained model: uploads, figures, the error guard and the command line."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from Engineering.apps import explorer_plots as plots
from Engineering.apps.explorer_session import load_hf_folder, open_explorer
from Engineering.apps.uploads import UPLOAD_SUBJECT, series_keys, upload_to_h5
from Engineering.data.demo import write_series_file
from Engineering.errors import ConfigError, DataError

TARGET = ("20208", "2_0", "primary_LAX_4Ch_transverse_0")


def test_nifti_upload_becomes_one_series_under_the_runs_key(tmp_path):
    cine = np.arange(4 * 5 * 3, dtype=np.int16).reshape(4, 5, 1, 3)  # NIfTI (x, y, z, t)
    nib.save(nib.Nifti1Image(cine, np.eye(4)), tmp_path / "heart.nii.gz")
    h5_path, subject = upload_to_h5(tmp_path / "heart.nii.gz", tmp_path, TARGET)
    assert subject == UPLOAD_SUBJECT
    assert series_keys(h5_path) == [f"{UPLOAD_SUBJECT}/20208/2_0/primary_LAX_4Ch_transverse_0"]
    import h5py

    with h5py.File(h5_path, "r") as f:
        stored = f[series_keys(h5_path)[0]][()]
    assert stored.shape == (1, 3, 1, 4, 5)  # (C, T, S, X, Y), as convert_nifti.py stores it
    np.testing.assert_array_equal(stored[0, :, 0], np.transpose(cine[:, :, 0], (2, 0, 1)))


def test_hdf5_upload_with_one_series_is_read_in_place(tmp_path):
    path = write_series_file(tmp_path / "one.h5", {"1000011/20208/2_0/primary_x": np.zeros((1, 2, 1, 4, 4))})
    assert upload_to_h5(path, tmp_path, TARGET) == (path, "1000011")


@pytest.mark.parametrize(
    ("name", "series", "message"),
    [
        ("two.h5", {"1/20208/2_0/primary_a": np.zeros(2), "1/20208/2_0/primary_b": np.zeros(2)}, "holds 2 series"),
        ("none.hdf5", {"1/x": np.zeros(2)}, "holds 0 series"),
        ("notes.txt", None, "expected a NIfTI file"),
    ],
)
def test_unusable_uploads_are_refused_in_one_line(tmp_path, name, series, message):
    path = tmp_path / name
    if series is None:
        path.write_text("hello")
    else:
        write_series_file(path, series)
    with pytest.raises(DataError, match=message):
        upload_to_h5(path, tmp_path, TARGET)


def test_a_corrupt_hdf5_upload_names_the_file(tmp_path):
    (tmp_path / "broken.h5").write_bytes(b"not an hdf5 file")
    with pytest.raises(DataError, match="broken.h5 is not a readable HDF5 file"):
        upload_to_h5(tmp_path / "broken.h5", tmp_path, TARGET)


def test_a_corrupt_nifti_upload_is_a_data_error(tmp_path):
    (tmp_path / "broken.nii").write_bytes(b"not a nifti file")
    with pytest.raises(DataError, match="no NIfTI series converted"):
        upload_to_h5(tmp_path / "broken.nii", tmp_path, TARGET)


def test_figures_are_rgb_images_and_the_moved_panels_change_the_picture():
    rng = np.random.default_rng(0)
    inp, recon, moved = (rng.random((8, 8)) for _ in range(3))
    three = plots.image_panels(0, 4, inp, recon, None, "moved")
    five = plots.image_panels(0, 4, inp, recon, moved, "moved: Z0 +1")
    assert three.dtype == np.uint8 and three.ndim == 3 and three.shape[2] == 3
    assert five.shape[1] > three.shape[1]  # two more panels
    bars = plots.latent_bars(rng.normal(size=8), None, "z")
    moved_bars = plots.latent_bars(np.zeros(8), np.ones(8), "z")
    assert bars.shape == moved_bars.shape and not np.array_equal(bars, moved_bars)
    cloud = rng.normal(size=(10, 2))
    assert plots.latent_map(cloud, cloud[:1], cloud[1:2], (0.6, 0.3), "map").shape[2] == 3


def test_guard_turns_failures_into_a_status_line_and_leaves_other_outputs_alone():
    from Engineering.apps.explorer_ui import ERROR_CLASS, guarded

    unchanged = object

    def bad_input(_: object) -> tuple:
        raise DataError("subject 42 is not in data.h5;\n expected a patient ID")

    def bug(_: object) -> tuple:
        raise KeyError("x_T")

    out = guarded(3, bad_input, unchanged)(None)
    assert len(out) == 3 and all(type(o) is object for o in out[:2]) and ERROR_CLASS in out[-1]
    assert "subject 42 is not in data.h5; expected a patient ID" in out[-1]
    assert "internal error (KeyError: &#x27;x_T&#x27;)" in guarded(2, bug, unchanged)(None)[-1]
    assert guarded(2, lambda v: (v, "fine"), unchanged)(1) == (1, "fine")


def test_exactly_one_model_source_is_needed():
    with pytest.raises(ConfigError, match="exactly one of --run_dir RUN and --load_hf FOLDER"):
        open_explorer(None, None)
    with pytest.raises(ConfigError, match="exactly one of"):
        open_explorer("a", "b")


def test_load_hf_needs_an_exported_diffae_folder(tmp_path):
    with pytest.raises(ConfigError, match="no config.json; expected a folder written by export_hf.py"):
        load_hf_folder(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"imlatent": {"script": "recon"}}))
    with pytest.raises(ConfigError, match="has no 'imlatent' section of a DiffAE run"):
        load_hf_folder(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2")
    with pytest.raises(ConfigError, match="cannot be read as a JSON object"):
        load_hf_folder(tmp_path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--run_dir", "no/such/run"], "--run_dir no/such/run is not a folder"),
        (["--run_dir", ".", "--direction", "sideways", "1"], "--direction 'sideways': expected one of index"),
        (["--run_dir", ".", "--port", "0"], "--port 0; expected 1..65535"),
        (["--run_dir", ".", "--threads", "0"], "--threads 0; expected 1 or more"),
    ],
)
def test_explore_cli_refuses_bad_input_in_one_line(repo_root, capsys, args, message):
    import importlib.util

    from Engineering.errors import run_guarded

    spec = importlib.util.spec_from_file_location("explore", repo_root / "Executors" / "explore.py")
    explore = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(explore)
    assert run_guarded(explore.main, args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("imlatent: error: ") and message in err and "\n" not in err
