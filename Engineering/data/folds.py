"""Fold CSVs: columns ``train``, ``val``, ``test``; row i is fold i.

Each cell is the Python repr of a list of patient-ID strings. Cells are parsed with ``ast.literal_eval`` and
membership is exact (unlike the original's substring test, patient "123" does not match "1234567").
"""

from __future__ import annotations

import ast
import csv
import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import pandas as pd

from Engineering.data.checks import open_h5_file
from Engineering.errors import DataError
from Engineering.fileio import atomic_write

SPLITS = ("train", "val", "test")


@dataclass
class Fold:
    """Patient IDs (strings) of one fold."""

    train: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)

    def split(self, name: str) -> list[str]:
        """The ID list of split ``name`` (train, val or test)."""
        return list(getattr(self, name))


def _parse_cell(cell: object, csv_path: Path, column: str, fold_id: int) -> list[str]:
    try:
        value = ast.literal_eval(str(cell))
    except (ValueError, SyntaxError):
        value = None
    if not isinstance(value, list | tuple):
        raise DataError(
            f"fold CSV {csv_path}: cell {column}[{fold_id}] = {str(cell)[:60]!r} is not a list; "
            f"expected the repr of a list of patient IDs such as ['1000011', '1000022']"
        )
    return [str(v) for v in value]


def read_folds(csv_path: str | os.PathLike[str], fold_id: int, disjoint: bool = True) -> Fold:
    """Read row ``fold_id`` of the fold CSV at ``csv_path`` into a :class:`Fold` of exact ID lists.

    With ``disjoint`` a patient ID listed twice in the fold (within or across splits) is a DataError.
    """
    path = Path(csv_path)
    if not path.is_file():
        raise DataError(f"fold CSV {path} does not exist; expected a file with columns train,val,test")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(
            f"fold CSV {path} cannot be read ({type(err).__name__}); expected a CSV with columns train,val,test"
        ) from None
    missing = [c for c in SPLITS if c not in table.columns]
    if missing:
        raise DataError(
            f"fold CSV {path} lacks column(s) {', '.join(missing)}; expected columns train,val,test "
            f"(found {', '.join(map(str, table.columns)) or 'none'})"
        )
    n_folds = len(table)
    if not isinstance(fold_id, int) or not 0 <= fold_id < n_folds:
        raise DataError(
            f"foldID {fold_id!r} is out of range for fold CSV {path}; it has {n_folds} fold(s) "
            f"(valid foldID 0..{n_folds - 1})"
        )
    row = table.iloc[fold_id]
    fold = Fold(**{c: _parse_cell(row[c], path, c, fold_id) for c in SPLITS})
    if disjoint:
        _check_disjoint(fold, path, fold_id)
    return fold


def _check_disjoint(fold: Fold, path: Path, fold_id: int) -> None:
    """Every patient ID appears once in fold ``fold_id``: no duplicates in a split, no ID in two splits."""
    seen: dict[str, str] = {}
    for split in SPLITS:
        for pid in fold.split(split):
            if pid in seen:
                where = f"twice in {split}" if seen[pid] == split else f"in both {seen[pid]} and {split}"
                raise DataError(f"fold CSV {path}: patient ID {pid} appears {where} of fold {fold_id}")
            seen[pid] = split


def _cut(ids: list[str], fractions: Sequence[float]) -> tuple[list[str], list[str], list[str]]:
    """Cut into train/val/test by fraction; a split with a non-zero fraction gets at least one ID when possible."""
    n = len(ids)
    n_val = round(fractions[1] * n)
    n_test = round(fractions[2] * n)
    if n >= 3:
        n_val = max(n_val, 1 if fractions[1] > 0 else 0)
        n_test = max(n_test, 1 if fractions[2] > 0 else 0)
    n_train = min(n - n_val - n_test, round(fractions[0] * n)) if sum(fractions) < 1 - 1e-9 else n - n_val - n_test
    return ids[:n_train], ids[n_train : n_train + n_val], ids[n_train + n_val : n_train + n_val + n_test]


def write_folds(
    csv_path: str | os.PathLike[str],
    patient_ids: Iterable[str],
    n_folds: int,
    fractions: Sequence[float] = (0.6, 0.1, 0.3),
    seed: int = 1701,
) -> Path:
    """Write a fold CSV: for each fold, reshuffle the sorted patient IDs and cut them into train/val/test.

    Like the original splitter the folds are independent random splits (not disjoint K-fold partitions; see
    :func:`kfold_partition` for those); unlike it, the IDs are sorted first so the file is reproducible from ``seed``. Patients (with all their visits) are never
    split across train/val/test. The file is written atomically. Returns the path.
    """
    if n_folds < 1:
        raise DataError(f"n_folds={n_folds} is invalid; expected at least 1")
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) > 1 + 1e-9:
        raise DataError(
            f"fractions={tuple(fractions)} are invalid; expected three non-negative numbers summing to <= 1"
        )
    ids = sorted({str(p) for p in patient_ids})
    rng = random.Random(seed)
    folds = []
    for _ in range(n_folds):
        rng.shuffle(ids)
        folds.append(Fold(*_cut(ids, fractions)))
    return write_fold_csv(csv_path, folds)


def write_fold_csv(csv_path: str | os.PathLike[str], folds: Sequence[Fold]) -> Path:
    """Write ``folds`` as a fold CSV (columns train,val,test; list-repr cells) atomically; returns the path."""
    path = Path(csv_path)

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(SPLITS)
            writer.writerows([repr(fold.split(c)) for c in SPLITS] for fold in folds)

    return atomic_write(path, write)


def kfold_partition(
    patient_ids: Iterable[str], n_folds: int, per_val: float = 0.1, per_dataset: float = 1.0, seed: int = 1701
) -> list[Fold]:
    """K-fold folds whose test splits partition the patients (each patient is tested in exactly one fold).

    The sorted unique IDs are shuffled once with ``random.Random(seed)`` (reproducible across processes), cut to
    ``int(per_dataset * N)`` once, and split into ``n_folds`` near-equal test blocks; in fold k, val is the first
    ``round(per_val * N)`` of the remaining patients (in shuffled order, rotated by k) and train is the rest.
    """
    if n_folds < 2:
        raise DataError(f"n_folds={n_folds} is invalid; expected at least 2 for K-fold partitions")
    if not 0 < per_dataset <= 1 or not 0 <= per_val < 1 - 1 / n_folds:
        raise DataError(
            f"per_dataset={per_dataset}, per_val={per_val} are invalid with {n_folds} folds; expected "
            f"0 < per_dataset <= 1 and 0 <= per_val < {1 - 1 / n_folds:.3f} (the test share is 1/n_folds)"
        )
    ids = sorted({str(p) for p in patient_ids})
    random.Random(seed).shuffle(ids)
    ids = ids[: int(per_dataset * len(ids))]
    if len(ids) < n_folds:
        raise DataError(f"{len(ids)} patient(s) cannot fill {n_folds} folds; expected at least one per fold")
    bounds = [round(k * len(ids) / n_folds) for k in range(n_folds + 1)]
    n_val = round(per_val * len(ids))
    folds = []
    for k in range(n_folds):
        test = ids[bounds[k] : bounds[k + 1]]
        rest = ids[bounds[k + 1] :] + ids[: bounds[k]]  # starts after the test block, so val rotates with k
        folds.append(Fold(train=rest[n_val:], val=rest[:n_val], test=test))
    return folds


def fold_csv_name(
    n_folds: int, per_dataset: float, per_val: float, seed: int, n_sessions: int = 0, ds_names: Sequence[str] = ()
) -> str:
    """``<n>folds[_<k>Ses][_<names joined by OR>]_<pDS>DS_<pTrn>Trn_<pVal>Val_<pTst>Tst_<seed>seed.csv``."""
    per_test = 1 / n_folds
    parts = (
        [f"{n_folds}folds"]
        + ([f"{n_sessions}Ses"] if n_sessions > 0 else [])
        + (["OR".join(ds_names)] if ds_names else [])
    )
    shares = f"{int(100 * per_dataset)}DS_{round(100 * (1 - per_val - per_test))}Trn_{round(100 * per_val)}Val_{round(100 * per_test)}Tst"
    return "_".join([*parts, shares, f"{seed}seed"]) + ".csv"


def _dataset_names(group: h5py.Group) -> list[str]:
    """Last path component of every dataset below ``group``."""
    names: list[str] = []
    group.visititems(lambda name, obj: names.append(name.rsplit("/", 1)[-1]) if isinstance(obj, h5py.Dataset) else None)
    return names


def eligible_patients(
    h5_path: str | os.PathLike[str], ds_names: Sequence[str] = (), n_sessions: int = 0, ignore: Iterable[str] = ()
) -> list[str]:
    """Patients of the file: with a dataset whose name contains one of ``ds_names`` (any when empty), with
    exactly ``n_sessions`` instance groups under some field (when > 0), minus ``ignore``; sorted."""
    skip = {str(p) for p in ignore}
    kept = []
    with open_h5_file(Path(h5_path)) as f:
        for pid, patient in f.items():
            if pid in skip or not isinstance(patient, h5py.Group):
                continue
            if n_sessions > 0 and not any(isinstance(g, h5py.Group) and len(g) == n_sessions for g in patient.values()):
                continue
            if not ds_names or any(d in n for n in _dataset_names(patient) for d in ds_names):
                kept.append(pid)
    return sorted(kept)
