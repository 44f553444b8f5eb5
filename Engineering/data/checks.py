"""Data checks shared by the reader (H5SeriesDataset, index.scan_file) and Executors/validate_h5.py.

Each check returns :class:`Finding` objects: one line naming the file, the series key and what was expected. The
reader raises the first error as a :class:`DataError` and logs the warnings; validate_h5 lists them all, with the
same words. Severity follows one rule: a case the original accepted is an error only when the run's result would
otherwise be wrong (a latent of zeros, a division by zero, complex numbers in a real network); otherwise a warning.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from Engineering.data.store import Location, ZarrStore, open_store
from Engineering.errors import DataError

log = logging.getLogger("imlatent.data")

AXES = ("Channel", "Time", "Slice", "X", "Y")
MINMAX = ("min_val", "max_val")
_WARN_LINES = 3  # per check, at run time; validate_h5 prints the full list


@dataclass(frozen=True)
class Finding:
    """One problem: ``check`` groups it in the report, ``key`` is the series (or entry) it is about."""

    error: bool
    check: str
    key: str
    message: str


@dataclass(frozen=True)
class Expectation:
    """What the run does with each series, which decides whether a finding is an error.

    ``fetch_minmax``: the dataset puts ``min_val``/``max_val`` into every sample (``volmin``/``volmax``).
    ``norm_type``: the run's normalisation; the non-zscore ones divide by those values (None = not known).
    ``is_complexDS``: the data are declared complex (None = not known: complex data are not checked).
    """

    fetch_minmax: bool = False
    norm_type: str | None = None
    is_complexDS: bool | None = None

    @property
    def minmax_used(self) -> bool:
        """IntensityNorm normalises with the attributes (ZScoreNorm never does, faithful)."""
        return self.fetch_minmax and self.norm_type not in (None, "zscore")


CONTRACT = Expectation()  # the file contract alone, whatever a run would do


def open_h5_file(h5_path: Location, **kwargs: Any) -> h5py.File | ZarrStore:
    """The data read-only: ``h5py.File(h5_path, "r")``, or the Zarr store of a ``*.zarr`` location; a missing,
    empty, truncated or foreign file is a one-line DataError."""
    return open_store(h5_path, **kwargs)


def _finding(error: bool, check: str, h5: Path | str, key: str, text: str) -> Finding:
    return Finding(error, check, key, f"{h5}: series {key} {text}")


def depth_finding(h5: Path | str, key: str, depth: int) -> Finding:
    """Series live exactly at patient/field/instance/series (the results writers need four components)."""
    return _finding(
        True, "depth", h5, key, f"is at depth {depth}; expected series only at patient/field/instance/series (4)"
    )


def shape_finding(h5: Path | str, key: str, shape: Sequence[int]) -> Finding | None:
    """A series must be 5-D (Channel, Time, Slice, X, Y) with at least one element on every axis."""
    if len(shape) != 5:
        return _finding(True, "shape", h5, key, f"has shape {tuple(shape)}; expected a 5-D array ({', '.join(AXES)})")
    empty = [f"{AXES[a]} (axis {a})" for a, n in enumerate(shape) if n == 0]
    if empty:
        return _finding(
            True,
            "shape",
            h5,
            key,
            f"has shape {tuple(shape)}: {', '.join(empty)} has length 0; expected at least one element on every "
            f"axis (an empty series would become a sample of zeros)",
        )
    return None


def dtype_finding(h5: Path | str, key: str, dtype: np.dtype, expect: Expectation) -> Finding | None:
    """Numeric real data, or complex data declared complex; booleans are read as 0/1 with a warning."""
    if dtype == np.bool_:
        return _finding(False, "dtype", h5, key, "has dtype bool; it is read as 0/1 float32 (is it a mask?)")
    if not np.issubdtype(dtype, np.number):
        return _finding(True, "dtype", h5, key, f"has dtype {dtype}; expected a numeric real or complex type")
    if np.issubdtype(dtype, np.complexfloating) and expect.is_complexDS is False:
        return _finding(
            True,
            "dtype",
            h5,
            key,
            f"holds complex data ({dtype}) but is_complexDS is false; expected real data, or set is_complexDS "
            f"true so that data.complex_mode converts it",
        )
    return None


def _number(value: Any) -> float | None:
    """The attribute as a float when it is one real number (any int/float type), else None."""
    arr = np.asarray(value)
    if arr.size != 1 or arr.dtype.kind not in "iuf":
        return None
    return float(arr.reshape(()))


def _minmax_use(expect: Expectation) -> str:
    if expect.minmax_used:
        return f"norm_type {expect.norm_type} normalises with it"
    if expect.fetch_minmax:
        return f"it is read into every sample; norm_type {expect.norm_type or 'zscore'} does not use it"
    return "the volumetric normalisations read it"


def minmax_findings(h5: Path | str, key: str, ds: h5py.Dataset, expect: Expectation) -> list[Finding]:
    """``min_val``/``max_val`` must be finite numbers; with a volumetric normalisation, a non-zero divisor."""
    attrs = ds.attrs
    if not all(a in attrs for a in MINMAX):
        return []
    values: dict[str, float] = {}
    found: list[Finding] = []
    for name in MINMAX:
        number = _number(attrs[name])
        if number is None:  # the reader's float() would fail, so this is an error whenever it is read
            found.append(
                _finding(
                    expect.fetch_minmax,
                    "min/max",
                    h5,
                    key,
                    f"has {name}={attrs[name]!r}; expected one real number ({_minmax_use(expect)})",
                )
            )
        elif not math.isfinite(number):
            found.append(
                _finding(
                    expect.minmax_used,
                    "min/max",
                    h5,
                    key,
                    f"has {name}={number}; expected a finite number ({_minmax_use(expect)})",
                )
            )
        else:
            values[name] = number
    if found or not expect.minmax_used:
        return found
    zero = _zero_divisor(ds, values["min_val"], values["max_val"], str(expect.norm_type))
    return [_finding(True, "min/max", h5, key, zero)] if zero else []


def _zero_divisor(ds: h5py.Dataset, vmin: float, vmax: float, norm_type: str) -> str | None:
    """Why normalising with (vmin, vmax) would be wrong, or None.

    A zero divisor only gives a right result (zeros) when every voxel equals the subtracted value, as for a flat
    series whose attributes are correct; only those degenerate series are read here.
    """
    if "minmax" in norm_type:
        if vmax > vmin:
            return None
        if vmax < vmin:
            return f"has min_val={vmin} > max_val={vmax}; expected min_val <= max_val ({norm_type} divides by their difference)"
        if np.all(ds[()] == vmin):
            return None
        return (
            f"has min_val == max_val == {vmin} but voxels that differ from it; expected the series' true minimum "
            f"and maximum ({norm_type} divides by max_val - min_val, here zero)"
        )
    if vmax != 0 or not np.any(ds[()]):
        return None
    return f"has max_val=0 but non-zero voxels; expected the series' true maximum ({norm_type} divides by max_val)"


def storage_finding(h5: Path | str, key: str, ds: Any) -> Finding | None:
    """A series must live inside the file: HDF5 external storage and virtual datasets read other files' bytes,
    which a crafted data file could use to copy any readable local file into recon.h5 and the panels."""
    if getattr(ds, "external", None):
        where = ", ".join(str(name) for name, *_ in ds.external)
        return _finding(
            True, "storage", h5, key, f"is stored in external file(s) {where}; expected data inside the file"
        )
    if getattr(ds, "is_virtual", False):
        return _finding(
            True, "storage", h5, key, "is a virtual dataset mapping other files; expected data inside the file"
        )
    return None


def series_findings(h5: Path | str, key: str, ds: h5py.Dataset, expect: Expectation) -> list[Finding]:
    """Every per-series check: storage inside the file, shape, dtype (and complex vs is_complexDS), min_val/max_val."""
    storage = storage_finding(h5, key, ds)
    if storage is not None:
        return [storage]
    shape = shape_finding(h5, key, ds.shape)
    if shape is not None:
        return [shape]
    dtype = dtype_finding(h5, key, ds.dtype, expect)
    if dtype is not None and dtype.error:
        return [dtype]
    return ([dtype] if dtype else []) + minmax_findings(h5, key, ds, expect)


def group_finding(h5: Path | str, key: str) -> Finding:
    """A series stored as a group: the reader only reads datasets, so it is skipped."""
    return _finding(
        False, "group", h5, key, "is a group, not a dataset; it is skipped (expected a 5-D dataset at this path)"
    )


def minmax_presence_findings(
    h5: Path | str, with_attrs: list[str], without: list[str], expect: Expectation
) -> list[Finding]:
    """With fetch_minmax every sample of a batch must carry min_val/max_val, or none (else the batch cannot be built)."""
    if not without or not expect.fetch_minmax:
        return []
    example = without[0]
    if not with_attrs:
        if not expect.minmax_used:
            return []
        return [
            Finding(
                False,
                "min/max",
                "*",
                f"{h5}: no selected series has min_val/max_val (e.g. {example}); norm_type {expect.norm_type} "
                f"falls back to each sample's own minimum and maximum",
            )
        ]
    return [
        Finding(
            True,
            "min/max",
            "*",
            f"{h5}: {len(with_attrs)} selected series have min_val/max_val but {len(without)} do not (e.g. series "
            f"{example}); expected them on every series or on none (each sample of a batch carries them)",
        )
    ]


def check_selected(
    h5_path: Location, keys: Iterable[str], expect: Expectation, f: h5py.File | None = None
) -> list[Finding]:
    """The per-series checks over the selected series ``keys`` (each once) and the min/max presence check."""
    handle = f if f is not None else open_h5_file(h5_path)
    found: list[Finding] = []
    with_attrs: list[str] = []
    without: list[str] = []
    try:
        for key in dict.fromkeys(keys):
            ds = handle[key]
            found += series_findings(h5_path, key, ds, expect)
            (with_attrs if all(a in ds.attrs for a in MINMAX) else without).append(key)
    finally:
        if f is None:
            handle.close()
    return found + minmax_presence_findings(h5_path, with_attrs, without, expect)


def no_samples_message(h5: Path | str, split: str, n_patients: int) -> str:
    """An empty selection (the reader's and validate_h5's words)."""
    return (
        f"no samples selected from {h5} for the {split} split ({n_patients} patient IDs); check the fold IDs, "
        f"DS_every_primary, DS_selected_primaries and DS_sanity_filters"
    )


def voxels_message(h5: Path | str, key: str) -> str:
    """Non-finite voxels (found when a sample is read, or by validate_h5's full scan)."""
    return f"{h5}: series {key} holds non-finite voxels (NaN or inf); expected finite values: clean or drop that series"


def raise_or_log(findings: Sequence[Finding]) -> None:
    """Raise the first error (counting the others); log the warnings, a few per check."""
    errors = [x for x in findings if x.error]
    if errors:
        more = (
            f" (and {len(errors) - 1} more problem(s): Executors/validate_h5.py lists them)" if len(errors) > 1 else ""
        )
        raise DataError(errors[0].message + more)
    by_check: dict[str, list[Finding]] = {}
    for x in findings:
        by_check.setdefault(x.check, []).append(x)
    for items in by_check.values():
        for x in items[:_WARN_LINES]:
            log.warning("%s", x.message)
        if len(items) > _WARN_LINES:
            log.warning(
                "... and %d more warning(s) like these (Executors/validate_h5.py lists them)", len(items) - _WARN_LINES
            )
