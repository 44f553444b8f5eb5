"""Fold CSV reading (exact membership, errors) and the reproducible writer."""

from __future__ import annotations

import pytest

from Engineering.data.folds import read_folds, write_folds
from Engineering.errors import DataError


def _csv(tmp_path, text: str):
    path = tmp_path / "folds.csv"
    path.write_text(text)
    return path


def test_read_folds_parses_lists(tmp_path):
    path = _csv(
        tmp_path,
        "train,val,test\n\"['1234567', '1000011']\",['1000022'],\"['1000033']\"\n"
        "['1000033'],[],\"['1234567', '1000011', '1000022']\"\n",
    )
    fold = read_folds(path, 1)
    assert fold.train == ["1000033"] and fold.val == [] and fold.test == ["1234567", "1000011", "1000022"]


def test_membership_is_exact_not_substring(tmp_path):
    fold = read_folds(_csv(tmp_path, "train,val,test\n['1234567'],[],[]\n"), 0)
    assert "123" not in fold.train and "1234567" in fold.train


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"fold CSV .*nofolds.csv does not exist; expected a file with columns"):
        read_folds(tmp_path / "nofolds.csv", 0)


def test_missing_columns_are_named(tmp_path):
    with pytest.raises(DataError, match=r"lacks column\(s\) val, test; expected columns train,val,test"):
        read_folds(_csv(tmp_path, "train,other\n[],[]\n"), 0)


def test_fold_id_out_of_range_says_how_many(tmp_path):
    with pytest.raises(DataError, match=r"foldID 3 is out of range .* it has 2 fold\(s\) \(valid foldID 0..1\)"):
        read_folds(_csv(tmp_path, "train,val,test\n[],[],[]\n[],[],[]\n"), 3)


def test_unparsable_cell(tmp_path):
    with pytest.raises(DataError, match=r"cell val\[0\] = 'oops' is not a list"):
        read_folds(_csv(tmp_path, "train,val,test\n[],oops,[]\n"), 0)


def test_write_folds_reproducible_and_partitioned(tmp_path):
    ids = [str(1000000 + n) for n in range(20)]
    a = write_folds(tmp_path / "a.csv", ids, 3, seed=5)
    b = write_folds(tmp_path / "b.csv", list(reversed(ids)), 3, seed=5)
    assert a.read_text() == b.read_text()
    for k in range(3):
        fold = read_folds(a, k)
        assert (len(fold.train), len(fold.val), len(fold.test)) == (12, 2, 6)
        assert sorted(fold.train + fold.val + fold.test) == ids
    assert read_folds(a, 0).train != read_folds(a, 1).train
    assert not list(tmp_path.glob(".*.tmp"))


def test_write_folds_rejects_bad_fractions(tmp_path):
    with pytest.raises(DataError, match=r"fractions=\(0.6, 0.6, 0.1\) are invalid"):
        write_folds(tmp_path / "x.csv", ["1"], 1, fractions=(0.6, 0.6, 0.1))
