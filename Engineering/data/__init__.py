"""Data: the HDF5 series dataset and its options, sample index and cache, fold CSVs, phenotype tables,
the Lightning DataModule and the demo-data generator.

Modules: ``options`` (DatasetOptions), ``index`` (selection, index, cache), ``h5dataset`` (H5SeriesDataset),
``folds`` (read_folds / write_folds), ``sidecars`` (phenotypes, confounders), ``datamodule`` (H5DataModule),
``demo`` (write_demo_dataset). The names below are imported lazily, so ``import Engineering.data`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DatasetOptions": "options",
    "H5SeriesDataset": "h5dataset",
    "Fold": "folds",
    "read_folds": "folds",
    "write_folds": "folds",
    "H5DataModule": "datamodule",
    "choose_recon_subjects": "datamodule",
    "DemoPaths": "demo",
    "write_demo_dataset": "demo",
    "write_series_file": "demo",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
