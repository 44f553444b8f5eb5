"""Bring your own data, end to end: real NIfTI (nibabel's example4d) → convert_nifti → make_folds → validate_h5 →
one epoch of the Identity recon model → emb.h5 holds the test subjects of fold 0."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path

from Engineering.data.folds import read_folds
from Engineering.engines.runner import main

EIDS = [f"100000{n}" for n in range(6)]  # equal-length IDs: fold membership is a substring test (faithful)
FRAMES, SIZE = 4, 32  # SSIM needs every axis >= 3


def _executor(repo_root: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, repo_root / "Executors" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _write_subjects(root: Path) -> None:
    """Per subject a 4-frame 32×32 single-slice crop of example4d: its 2 volumes at 2 neighbouring slices."""
    img = nib.load(Path(data_path) / "example4d.nii.gz")
    data = np.asanyarray(img.dataobj)  # (128, 96, 24, 2) int16
    for n, eid in enumerate(EIDS):
        (root / eid).mkdir(parents=True)
        crop = data[48 : 48 + SIZE, 32 : 32 + SIZE, 8 + n : 10 + n]  # (x, y, 2, 2)
        crop = crop.transpose(0, 1, 3, 2).reshape(SIZE, SIZE, 1, FRAMES)  # (x, y, z=1, t)
        nib.save(nib.Nifti1Image(crop, img.affine), root / eid / "epi.nii.gz")


@pytest.mark.slow
def test_nifti_to_embeddings(tmp_path, monkeypatch, repo_root, capsys):
    monkeypatch.chdir(repo_root)
    datadir = tmp_path / "mydata"
    _write_subjects(tmp_path / "nii")
    convert = _executor(repo_root, "convert_nifti")
    argv = ["--in", str(tmp_path / "nii"), "--pattern", r"^(?P<patient>\d{7})/", "--out", str(datadir / "data.h5")]
    assert convert(argv + ["--field", "20227", "--instance", "2_0", "--key", "primary_EPI", "--no_progress"]) == 0
    with h5py.File(datadir / "data.h5", "r") as f:
        assert sorted(f) == EIDS
        assert all(f[f"{e}/20227/2_0/primary_EPI"].shape == (1, FRAMES, 1, SIZE, SIZE) for e in EIDS)

    make_folds = _executor(repo_root, "make_folds")
    assert make_folds(["--h5", str(datadir / "data.h5"), "--n_folds", "2", "--out", str(datadir / "folds.csv")]) == 0
    fold = read_folds(datadir / "folds.csv", 0)
    assert sorted(fold.train + fold.val + fold.test) == EIDS and len(fold.test) == 3

    run_json = {
        "run_prefix": "byod",
        "datadir": str(datadir),
        "datafile": "data.h5",
        "foldCSV": "folds.csv",
        "tblog_path": str(tmp_path / "tb"),
        "save_path": str(tmp_path / "results"),
        "is_complexDS": False,
        "DS_selected_primaries": ["EPI"],
        "DS_multi_channel": False,
        "DS_split_volume": False,
        "DS_split_time": False,
    }
    json_path = tmp_path / "dataNpath_byod.json"
    json_path.write_text(json.dumps(run_json))
    validate = _executor(repo_root, "validate_h5")
    assert validate(["--json", str(json_path)]) == 0
    out = capsys.readouterr().out
    assert "0 error(s)" in out and "selection test: 3 sample(s)" in out

    args = ["--datajson_path", str(json_path), "--modelID", "-1", "--num_epochs", "1", "--trainID", "own",
            "--accelerator", "cpu", "--num_workers", "0", "--ampmode", "32", "--input_shape", f"{FRAMES},{SIZE},{SIZE}",
            "--batch_size", "2", "--effective_batch_size", "2", "--n_save_recon_subs", "1"]  # fmt: skip
    assert main("recon", args) == 0
    (run_dir,) = [p for p in (tmp_path / "results").iterdir() if p.is_dir()]
    with h5py.File(run_dir / "Output" / "emb.h5", "r") as f:
        keys: list[str] = []
        f.visititems(lambda name, obj: keys.append(name) if isinstance(obj, h5py.Dataset) else None)
        assert sorted(keys) == sorted(f"{e}/20227/2_0/primary_EPI" for e in fold.test)
        assert all(np.isfinite(f[k][()]).all() for k in keys)
