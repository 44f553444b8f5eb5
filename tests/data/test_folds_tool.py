"""K-fold partitions, the companion file name, patient filters and the make_folds CLI."""

from __future__ import annotations

import importlib.util

import pytest

from Engineering.data.demo import write_demo_dataset
from Engineering.data.folds import eligible_patients, fold_csv_name, kfold_partition, read_folds
from Engineering.errors import DataError, run_guarded

IDS = [str(1000000 + n) for n in range(23)]


def test_partition_properties():
    folds = kfold_partition(IDS, 5, per_val=0.1, seed=3)
    tests = [p for f in folds for p in f.test]
    assert sorted(tests) == sorted(IDS)  # every patient tested exactly once
    for f in folds:
        assert not set(f.train) & set(f.val) and not set(f.train) & set(f.test) and not set(f.val) & set(f.test)
        assert sorted(f.train + f.val + f.test) == sorted(IDS) and len(f.val) == 2
    assert kfold_partition(reversed(IDS), 5, seed=3) == folds  # reproducible, input order irrelevant
    assert kfold_partition(IDS, 5, seed=4) != folds
    assert len([p for f in kfold_partition(IDS, 5, per_dataset=0.5) for p in f.test]) == 11


def test_partition_errors_and_name():
    with pytest.raises(DataError, match="n_folds=1 is invalid; expected at least 2"):
        kfold_partition(IDS, 1)
    with pytest.raises(DataError, match="per_val=0.9 are invalid with 5 folds"):
        kfold_partition(IDS, 5, per_val=0.9)
    with pytest.raises(DataError, match="3 patient\\(s\\) cannot fill 5 folds"):
        kfold_partition(IDS[:3], 5)
    assert fold_csv_name(5, 1.0, 0.1, 1701) == "5folds_100DS_70Trn_10Val_20Tst_1701seed.csv"
    assert (
        fold_csv_name(5, 1.0, 0.1, 1701, 1, ["LAX_4Ch"]) == "5folds_1Ses_LAX_4Ch_100DS_70Trn_10Val_20Tst_1701seed.csv"
    )


def test_eligible_patients_and_cli(tmp_path, repo_root, capsys):
    paths = write_demo_dataset(tmp_path, n_patients=8, frames=3, size=8)
    ids = paths.patient_ids
    assert eligible_patients(paths.data_h5) == ids
    assert eligible_patients(paths.data_h5, n_sessions=1) == [p for n, p in enumerate(ids) if n not in (1, 2, 4)]
    assert eligible_patients(paths.data_h5, ["2Ch_sagittal"]) == [ids[5]]
    assert eligible_patients(paths.data_h5, ignore=[ids[0]]) == ids[1:]
    spec = importlib.util.spec_from_file_location("make_folds", repo_root / "Executors" / "make_folds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert run_guarded(module.main, ["--h5", str(paths.data_h5), "--n_folds", "4", "--per_val", "0.125"]) == 0
    out = tmp_path / "4folds_100DS_62Trn_12Val_25Tst_1701seed.csv"
    assert "4 folds over 8 patients" in capsys.readouterr().out and out.is_file()
    assert sorted(p for k in range(4) for p in read_folds(out, k).test) == ids
    assert run_guarded(module.main, ["--h5", str(paths.data_h5), "--ds_names_present", "nothing"]) == 2
    assert "no patient of" in capsys.readouterr().err
