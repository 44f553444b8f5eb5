"""The HDF5 series dataset: one item per index entry ``(pid/field/instance/series, (i, j, k))``.

Item (before collation)::

    {"inp": {"data": float32/complex64 tensor (C, H, W) or (C, D, H, W),
             "volmin": float, "volmax": float,      # fetchMinMax and the series has min_val/max_val
             "mask": float32 tensor, data's shape}, # data_mask_mode 2
     "key": "pid/field/instance/series", "indices": (i, j, k),
     "phenotypes": float32 (n,), "confounders_continuous": float32, "confounders_binary": int,
     "confounders_multicat": int}                 # when the fetch flags are on

The HDF5 file is opened lazily once per process (a forked worker reopens it; pickling drops the handle).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from Engineering.data.checks import (
    Expectation,
    check_selected,
    no_samples_message,
    open_h5_file,
    raise_or_log,
    voxels_message,
)
from Engineering.data.index import Entry, build_index
from Engineering.data.options import DatasetOptions
from Engineering.data.sidecars import SideTables, load_side_tables
from Engineering.data.store import Location, ZarrStore, as_location, is_zarr, location_exists
from Engineering.errors import DataError

log = logging.getLogger("imlatent.data")

MASK_FILE = "meta_mask.h5"
IN_FILE_MASKS = ("meta_mask_0", "meta_mask")


def open_h5(path: Location) -> h5py.File | ZarrStore:
    """Open the data read-only the way the pipeline reads it (HDF5: ``libver='latest', swmr=True``; or Zarr)."""
    return open_h5_file(path, libver="latest", swmr=True)


def list_patients(h5_path: Location) -> list[str]:
    """All top-level group names of the file (or Zarr store), in h5py order."""
    with open_h5_file(h5_path) as f:
        return list(f.keys())


def _read_permuted(ds: h5py.Dataset, sel: Sequence[slice], perm: Sequence[int]) -> np.ndarray:
    """Read ``ds`` with ``sel`` given on the permuted axes; returns the permuted 5-D array."""
    raw: list[slice] = [slice(None)] * 5
    for p, s in enumerate(sel):
        raw[perm[p]] = s
    return np.transpose(ds[tuple(raw)], perm)


class H5SeriesDataset(Dataset):
    """Samples of the series selected from ``h5_path`` for the patients ``patient_ids`` (None = all).

    ``split`` only labels messages. ``transform`` maps the sample dict (numpy data) to the final sample;
    without one, the data is turned into a tensor as is. ``expect`` says what the run does with the series (its
    normalisation, is_complexDS), which the data checks need; without it only the reader's own needs are checked.
    """

    def __init__(
        self,
        h5_path: str | os.PathLike[str],
        patient_ids: Sequence[str] | None,
        options: DatasetOptions,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        split: str = "all",
        use_cache: bool = True,
        expect: Expectation | None = None,
    ) -> None:
        self.h5_path = as_location(h5_path)
        if not location_exists(self.h5_path):
            raise DataError(
                f"data file {self.h5_path} does not exist; expected an HDF5 file or a .zarr store (datadir/datafile)"
            )
        self.options = options
        self.transform = transform
        self.split = split
        ids = list_patients(self.h5_path) if patient_ids is None else [str(p) for p in patient_ids]
        self.side = self._load_side_tables()
        ids = self._filter_by_side_tables(ids)
        self.patient_ids = ids
        self.expect = expect or Expectation(fetch_minmax=options.fetchMinMax)
        self.entries: list[Entry] = build_index(self.h5_path, ids, options, use_cache, split, self._check_entries)
        self.mask_source = self._find_mask_source() if options.data_mask_mode else ""
        self._file: h5py.File | None = None
        self._mask_file: h5py.File | None = None
        self._pid: int | None = None
        self._series: dict[str, tuple[h5py.Dataset, tuple[float, float] | None]] = {}

    def _check_entries(self, entries: list[Entry]) -> None:
        """The data checks of the selected series; they depend on the normalisation and is_complexDS too."""
        if not entries:
            raise DataError(no_samples_message(self.h5_path, self.split, len(self.patient_ids)))
        raise_or_log(check_selected(self.h5_path, (path for path, _ in entries), self.expect))

    def _load_side_tables(self) -> SideTables:
        o = self.options
        return load_side_tables(
            o.phenotypes if o.fetch_phenotypes else None, o.confounders if o.fetch_confounders else None
        )

    def _filter_by_side_tables(self, ids: list[str]) -> list[str]:
        known = self.side.patient_ids()
        if known is None:
            return ids
        bad = [p for p in ids if not p.lstrip("-").isdigit()]
        if bad:
            raise DataError(
                f"patient ID {bad[0]!r} in {self.h5_path} is not an integer; phenotype/confounder "
                f"tables need integer FIDs"
            )
        kept = [p for p in ids if int(p) in known]
        if len(kept) < len(ids):
            log.warning(
                "%d patient(s) of the %s split have no phenotype/confounder row and are dropped",
                len(ids) - len(kept),
                self.split,
            )
        return kept

    def _find_mask_source(self) -> str:
        group = self.entries[0][0].rsplit("/", 1)[0]
        with open_h5_file(self.h5_path) as f:
            if any(name in f[group] for name in IN_FILE_MASKS):
                return "infile"
        if isinstance(self.h5_path, Path) and not is_zarr(self.h5_path) and (self.h5_path.parent / MASK_FILE).is_file():
            return "sidecar"
        raise DataError(
            f"DS_data_mask_mode={self.options.data_mask_mode} needs a mask: neither meta_mask_0/meta_mask in group "
            f"{group} of {self.h5_path} nor (for an HDF5 file) {MASK_FILE} beside it"
        )

    def __len__(self) -> int:
        return len(self.entries)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_file=None, _mask_file=None, _pid=None, _series={})
        return state

    def _handles(self) -> tuple[h5py.File, h5py.File | None]:
        """The per-process file handles, opened on first use in each process."""
        pid = os.getpid()
        if self._file is None or self._pid != pid:
            self._file = open_h5(self.h5_path)
            sidecar = Path(self.h5_path).parent / MASK_FILE  # only ever "sidecar" for a local HDF5 file
            self._mask_file = open_h5(sidecar) if self.mask_source == "sidecar" else None
            self._pid = pid
            self._series = {}
        return self._file, self._mask_file

    def close(self) -> None:
        """Close the handles of this process (they reopen on the next item)."""
        for handle in (self._file, self._mask_file):
            if handle is not None and self._pid == os.getpid():
                handle.close()
        self._file = self._mask_file = self._pid = None
        self._series = {}

    def _series_of(self, f: h5py.File, path: str) -> tuple[h5py.Dataset, tuple[float, float] | None]:
        """The open dataset of ``path`` and its (min_val, max_val), looked up once per process, not per item."""
        cached = self._series.get(path)
        if cached is None:
            ds = f[path]
            attrs = ds.attrs
            wanted = self.options.fetchMinMax and "min_val" in attrs and "max_val" in attrs
            cached = self._series[path] = (ds, (float(attrs["min_val"]), float(attrs["max_val"])) if wanted else None)
        return cached

    def _selection(self, ijk: tuple[int, int, int]) -> tuple[list[slice], tuple[int, ...]]:
        """Permuted-axis slices of one entry and the axes that the entry drops."""
        o = self.options
        i, j, k = ijk
        flags = (not o.multi_channel, o.split_time, o.split_volume)
        sel = [slice(v, v + 1) if on else slice(None) for v, on in zip((i, j, k), flags, strict=True)]
        dropped = tuple(axis for axis, on in enumerate(flags) if on)
        return sel + [slice(None), slice(None)], dropped

    def _mask_dataset(self, f: h5py.File, mask_f: h5py.File | None, path: str) -> h5py.Dataset:
        if mask_f is not None:
            if path not in mask_f:
                raise DataError(f"{mask_f.filename} has no mask dataset {path}; expected one per data series")
            return mask_f[path]
        group = f[path.rsplit("/", 1)[0]]
        for name in IN_FILE_MASKS:
            if name in group:
                return group[name]
        raise DataError(f"{self.h5_path}: group {group.name} has no meta_mask_0/meta_mask dataset for series {path}")

    def _read_mask(self, ds: h5py.Dataset, sel: list[slice], data_shape: tuple[int, ...], key: str) -> np.ndarray:
        perm = self.options.permutation
        mshape = [ds.shape[perm[p]] for p in range(5)]
        msel = [slice(0, 1)] + [slice(0, 1) if mshape[a] == 1 else sel[a] for a in (1, 2)] + sel[3:]
        mask = _read_permuted(ds, msel, perm)
        try:
            return np.broadcast_to(mask, data_shape).astype(np.float32)
        except ValueError:
            raise DataError(f"mask for {key} has shape {ds.shape}; expected it to broadcast to the data") from None

    def fetch(self, index: int) -> dict[str, Any]:
        """The untransformed sample dict of entry ``index`` (numpy data, before the transforms)."""
        path, ijk = self.entries[index]
        f, mask_f = self._handles()
        ds, minmax = self._series_of(f, path)
        sel, dropped = self._selection(ijk)
        data = _read_permuted(ds, sel, self.options.permutation)
        mask = None
        if self.options.data_mask_mode:
            mask = self._read_mask(self._mask_dataset(f, mask_f, path), sel, data.shape, path)
        inp: dict[str, Any] = {"data": self._finish(data, dropped)}
        inp["data"] = inp["data"].astype(np.complex64 if np.iscomplexobj(data) else np.float32, copy=False)
        if not np.isfinite(inp["data"]).all():
            raise DataError(voxels_message(self.h5_path, path))
        if mask is not None:
            mask = self._finish(mask, dropped)
            if self.options.data_mask_mode == 1:
                inp["data"] = inp["data"] * mask
            else:
                inp["mask"] = mask
        if minmax is not None:
            inp["volmin"], inp["volmax"] = minmax
        sample: dict[str, Any] = {"inp": inp, "key": path, "indices": ijk}
        sample.update(self.side.item(path.split("/", 1)[0]) if self.side.arrays else {})
        return sample

    def _finish(self, arr: np.ndarray, dropped: tuple[int, ...]) -> np.ndarray:
        arr = np.squeeze(arr, axis=dropped) if dropped else arr
        return np.ascontiguousarray(arr.squeeze() if self.options.squeeze_slice else arr)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.fetch(index)
        if self.transform is not None:
            return self.transform(sample)
        inp = sample["inp"]
        inp["data"] = torch.from_numpy(inp["data"])
        if "mask" in inp:
            inp["mask"] = torch.from_numpy(inp["mask"])
        return sample
