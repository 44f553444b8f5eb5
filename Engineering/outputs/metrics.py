"""Writing the per-image metrics table ``metrics.csv`` + ``metrics.pkl`` (shell.md §6.4).

Both files are written whenever there is at least one row (DEFECT 20 fixed: the original needed more than one
test batch), each atomically (temporary sibling + :func:`os.replace`). The ID columns are plain Python strings
(object dtype) in the pickle, so that pandas 2.x readers (the companion tools) unpickle it without pandas 3's
string dtype.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from Engineering.errors import DataError
from Engineering.science.metrics import ID_COLUMNS

METRICS_CSV = "metrics.csv"
METRICS_PKL = "metrics.pkl"


def metrics_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The metrics table of ``rows`` (as made by :class:`Evaluator`), columns in the order of the first row."""
    if not rows:
        return pd.DataFrame()
    columns = list(rows[0])
    for n, row in enumerate(rows):
        if list(row) != columns:
            raise DataError(f"metrics row {n} has columns {list(row)}; expected {columns} like row 0")
    frame = pd.DataFrame([dict(row) for row in rows], columns=columns)
    for col in ID_COLUMNS:
        if col in frame:
            frame[col] = pd.Series([str(v) for v in frame[col]], index=frame.index, dtype=object)
    return frame


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_metrics(out_dir: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write ``metrics.csv`` (``index=False``) and ``metrics.pkl`` (``DataFrame.to_pickle``) to ``out_dir``.

    Nothing is written for zero rows; existing files are replaced.
    """
    if not rows:
        return
    frame = metrics_frame(rows)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _atomic(out_dir / METRICS_CSV, lambda p: frame.to_csv(p, index=False))
    _atomic(out_dir / METRICS_PKL, lambda p: frame.to_pickle(p))
