"""Fold CSVs (§5.2, outputs_and_consumers §1.9): columns ``train``, ``val``, ``test``; row i is fold i.

Each cell is the Python repr of a list of patient-ID strings. Cells are parsed with ``ast.literal_eval`` and
membership is exact (DEFECT 16 fixed: patient "123" does not match "1234567").
"""

from __future__ import annotations

import ast
import csv
import os
import random
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from Engineering.errors import DataError

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


def read_folds(csv_path: str | os.PathLike[str], fold_id: int) -> Fold:
    """Read row ``fold_id`` of the fold CSV at ``csv_path`` into a :class:`Fold` of exact ID lists."""
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
    return Fold(**{c: _parse_cell(row[c], path, c, fold_id) for c in SPLITS})


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

    Like the original splitter the folds are independent random splits (not disjoint K-fold partitions); unlike it,
    the IDs are sorted first so the file is reproducible from ``seed``. Patients (with all their visits) are never
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
    rows = []
    for _ in range(n_folds):
        rng.shuffle(ids)
        rows.append([repr(part) for part in _cut(ids, fractions)])
    path = Path(csv_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(SPLITS)
            writer.writerows(rows)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
