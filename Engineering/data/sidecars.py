"""Phenotype and confounder tables: TSVs indexed by ``FID`` (or ``f.eid``), values per patient.

Phenotypes and continuous confounders are z-scored with population statistics of the whole TSV (faithful: not
the training split); binary and multi-category confounders are label-encoded with sorted classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from Engineering.errors import DataError


def _split_cols(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [c.strip() for c in value.split(",") if c.strip()]
    return [str(c) for c in value]


def read_table(path: str | Path, cols: list[str]) -> pd.DataFrame:
    """Read the TSV indexed by ``FID`` (falling back to ``f.eid``) restricted to ``cols``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"table {path} does not exist; expected a TSV indexed by FID or f.eid")
    table = pd.read_csv(path, sep="\t")
    index = "FID" if "FID" in table.columns else "f.eid" if "f.eid" in table.columns else None
    if index is None:
        raise DataError(f"table {path} has neither a FID nor an f.eid column; expected one of them as patient ID")
    table = table.set_index(index)
    table.index = table.index.astype(int)
    table.index.name = "FID"
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise DataError(
            f"table {path} lacks column(s) {', '.join(missing)}; found {', '.join(map(str, table.columns))}"
        )
    return table[cols]


def _zscore(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    values = frame.to_numpy(dtype=np.float64)
    mean = values.mean(axis=0) if len(values) else np.zeros(values.shape[1])
    scale = values.std(axis=0) if len(values) else np.ones(values.shape[1])
    scale = np.where(scale == 0, 1.0, scale)  # sklearn StandardScaler keeps zero-variance columns unscaled
    return ((values - mean) / scale).astype(np.float32), mean, scale


def _label_encode(frame: pd.DataFrame) -> tuple[np.ndarray, dict[str, list[Any]]]:
    codes = np.zeros(frame.shape, dtype=np.int64)
    classes: dict[str, list[Any]] = {}
    for n, col in enumerate(frame.columns):
        uniq, inverse = np.unique(frame[col].to_numpy(), return_inverse=True)
        codes[:, n] = inverse
        classes[col] = uniq.tolist()
    return codes, classes


@dataclass
class SideTables:
    """Per-patient phenotype/confounder arrays plus what the engine records on hparams (``counts``)."""

    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # name → (FID index, values)
    counts: dict[str, int] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    def patient_ids(self) -> set[int] | None:
        """IDs present in every loaded table, or None when no table is loaded."""
        sets = [set(index.tolist()) for index, _ in self.arrays.values()]
        return set.intersection(*sets) if sets else None

    def item(self, patient_id: str) -> dict[str, np.ndarray]:
        """The rows of ``int(patient_id)`` per array name, squeezed (``(n,)`` for one row)."""
        pid = int(patient_id)
        return {name: values[index == pid].squeeze() for name, (index, values) in self.arrays.items()}


def load_side_tables(phenotypes: Mapping[str, Any] | None, confounders: Mapping[str, Any] | None) -> SideTables:
    """Load phenotypes (``{path, cols}``) and/or confounders (``{path, cols, bincat_cols, mulcat_cols}``)."""
    side = SideTables()
    if phenotypes is not None:
        table = read_table(phenotypes["path"], _split_cols(phenotypes["cols"]))
        values, mean, scale = _zscore(table)
        side.arrays["phenotypes"] = (table.index.to_numpy(), values)
        side.counts["n_phenotypes"] = table.shape[1]
        side.stats["phenotypes"] = {"cols": list(table.columns), "mean": mean.tolist(), "scale": scale.tolist()}
    if confounders is not None:
        cols = _split_cols(confounders["cols"])
        bincat = _split_cols(confounders.get("bincat_cols"))
        mulcat = _split_cols(confounders.get("mulcat_cols"))
        cont = [c for c in cols if c not in bincat and c not in mulcat]
        table = read_table(confounders["path"], cols)
        index = table.index.to_numpy()
        values, mean, scale = _zscore(table[cont])
        side.arrays["confounders_continuous"] = (index, values)
        bin_codes, bin_classes = _label_encode(table[bincat])
        mul_codes, mul_classes = _label_encode(table[mulcat])
        side.arrays["confounders_binary"] = (index, bin_codes)
        side.arrays["confounders_multicat"] = (index, mul_codes)
        side.counts.update(
            n_confounders=len(cols),
            n_confounders_bincat=len(bincat),
            n_confounders_mulcat=len(mulcat),
            n_confounders_cont=len(cont),
        )
        side.stats["confounders"] = {
            "cont_mean": mean.tolist(),
            "cont_scale": scale.tolist(),
            "bincat_classes": bin_classes,
            "mulcat_classes": mul_classes,
        }
    return side
