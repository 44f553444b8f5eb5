"""Writing the per-image metrics table ``metrics.csv`` + ``metrics.pkl``.

Both files are written whenever there is at least one row (the original needed more than one
test batch), each atomically (:func:`Engineering.outputs.files.atomic_write_bytes`). The ID columns are plain
Python strings (object dtype) in the pickle, so that pandas 2.x readers (the companion tools) unpickle it without
pandas 3's string dtype.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from Engineering.errors import DataError
from Engineering.outputs.files import atomic_write_bytes
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


def write_metrics(out_dir: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write ``metrics.csv`` (``index=False``) and ``metrics.pkl`` (``DataFrame.to_pickle``) to ``out_dir``.

    Nothing is written for zero rows; existing files are replaced.
    """
    if not rows:
        return
    frame = metrics_frame(rows)
    out_dir = Path(out_dir)
    atomic_write_bytes(out_dir / METRICS_CSV, frame.to_csv(index=False).encode("utf-8"))
    pickled = io.BytesIO()
    frame.to_pickle(pickled)
    atomic_write_bytes(out_dir / METRICS_PKL, pickled.getbuffer())
