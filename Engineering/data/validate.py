"""Check an input HDF5 file against the contract (outputs_and_consumers §1.12, shell §5) and, optionally, against a
dataNpath JSON + YAML ``data.dataset`` (what the datamodule would select, via the reader's own selection code) and a
fold CSV. Problems are collected as errors (the pipeline would fail or train on wrong data) or warnings.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from Engineering.data.datamodule import fold_csv_given, merge_dataset_options
from Engineering.data.folds import SPLITS, read_folds
from Engineering.data.index import SAMPLE_DEPTH, is_candidate, scan_file
from Engineering.data.options import DatasetOptions
from Engineering.errors import ConfigError, ImLatentError

_MASKS = ("meta_mask_0", "meta_mask")
_VOXEL_BLOCK = 2**24  # elements read at a time when scanning for NaN/inf


@dataclass
class ValidationReport:
    """Errors, warnings and informational lines, each tagged with a check name."""

    errors: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    info: list[str] = field(default_factory=list)

    def error(self, check: str, message: str) -> None:
        self.errors.append((check, message))

    def warn(self, check: str, message: str) -> None:
        self.warnings.append((check, message))

    def render(self, limit: int = 10) -> str:
        """The readable report: info, then errors and warnings grouped by check (``limit`` lines per check)."""
        lines = list(self.info)
        for title, items in (("ERROR", self.errors), ("WARNING", self.warnings)):
            by_check: dict[str, list[str]] = {}
            for check, message in items:
                by_check.setdefault(check, []).append(message)
            for check, messages in by_check.items():
                lines.append(f"{title} [{check}] ({len(messages)}):")
                lines += [f"  {m}" for m in messages[:limit]]
                if len(messages) > limit:
                    lines.append(f"  ... and {len(messages) - limit} more")
        lines.append(f"{len(self.errors)} error(s), {len(self.warnings)} warning(s)")
        return "\n".join(lines)


def _has_bad_voxels(ds: h5py.Dataset) -> bool:
    if not np.issubdtype(ds.dtype, np.inexact):
        return False
    step = max(1, _VOXEL_BLOCK // max(1, int(np.prod(ds.shape[1:]))))
    return any(not np.isfinite(ds[i : i + step]).all() for i in range(0, ds.shape[0], step))


def _check_series(path: str, ds: h5py.Dataset, need_minmax: bool, voxels: bool, report: ValidationReport) -> None:
    if ds.ndim != 5:
        report.error("shape", f"{path}: shape {ds.shape}; expected 5-D (Channel, Time, Slice, X, Y)")
    if not (np.issubdtype(ds.dtype, np.number) and ds.dtype != np.bool_):
        report.error("dtype", f"{path}: dtype {ds.dtype}; expected a numeric real or complex type")
        return
    missing = [a for a in ("min_val", "max_val") if a not in ds.attrs]
    if missing:
        (report.error if need_minmax else report.warn)(
            "min/max",
            f"{path}: no {'/'.join(missing)} attribute"
            + (" (needed by the 'vol' normalisation)" if need_minmax else ""),
        )
    absent = [a for a in ("seriesID", "DICOMHeader", "seriesDesc") if a not in ds.attrs]
    if absent:
        report.warn("attributes", f"{path}: no {'/'.join(absent)} attribute(s) (SHOULD, §1.12)")
    if voxels and _has_bad_voxels(ds):
        report.error("voxels", f"{path}: NaN or inf voxels")


def check_layout(f: h5py.File, need_minmax: bool, voxels: bool, report: ValidationReport) -> list[str]:
    """Structure checks over the whole file; returns the candidate series paths."""
    series: list[str] = []
    shapes: Counter[tuple[str, str]] = Counter()
    items: list[tuple[str, Any]] = []
    f.visititems(lambda name, obj: items.append((name, obj)))
    for path, obj in items:
        depth = path.count("/") + 1
        name = path.rsplit("/", 1)[-1]
        if isinstance(obj, h5py.Group):
            if not any(isinstance(o, h5py.Dataset) for o in _walk(obj)):
                report.warn("empty group", f"{path}: no datasets below this group")
            continue
        if not is_candidate(name):
            if name not in _MASKS:
                report.warn("ignored", f"{path}: name contains neither 'primary' nor 'auxiliary'; the reader skips it")
            continue
        if depth != SAMPLE_DEPTH:
            report.error("depth", f"{path}: dataset at depth {depth}; expected patient/field/instance/series (4)")
            continue
        if not name.startswith(("primary", "auxiliary")):
            report.warn("name", f"{path}: key should start with 'primary' or 'auxiliary' (it only contains it)")
        _check_series(path, obj, need_minmax, voxels, report)
        series.append(path)
        shapes[(str(obj.shape), str(obj.dtype))] += 1
    patients = list(f.keys())
    report.info.append(f"{f.filename}: {len(patients)} patient(s), {len(series)} candidate series")
    for (shape, dtype), n in shapes.most_common(10):
        report.info.append(f"  {n} series of shape {shape} {dtype}")
    return series


def _walk(group: h5py.Group) -> list[Any]:
    objs: list[Any] = []
    group.visititems(lambda _name, obj: objs.append(obj))
    return objs


def check_folds(csv_path: Path, patients: set[str], report: ValidationReport) -> int:
    """Every row of the fold CSV: parsable cells, IDs present in the file, duplicates, train/val/test overlaps."""
    try:
        n_rows = len(pd.read_csv(csv_path, dtype=str, keep_default_na=False))
        folds = [read_folds(csv_path, k, disjoint=False) for k in range(n_rows)]  # overlaps reported below
    except ImLatentError as err:
        report.error("folds", str(err))
        return 0
    tested: Counter[str] = Counter()
    for k, fold in enumerate(folds):
        for split in SPLITS:
            ids = fold.split(split)
            dups = sorted(p for p, n in Counter(ids).items() if n > 1)
            if dups:
                report.warn("fold duplicates", f"fold {k} {split}: ID(s) listed twice: {', '.join(dups[:5])}")
            absent = sorted(set(ids) - patients)
            if absent and len(absent) == len(set(ids)) and ids:
                report.error(
                    "fold IDs", f"fold {k} {split}: none of its {len(set(ids))} ID(s) is in the file (e.g. {absent[0]})"
                )
            elif absent:
                report.warn(
                    "fold IDs", f"fold {k} {split}: {len(absent)} ID(s) not in the file, e.g. {', '.join(absent[:3])}"
                )
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            both = sorted(set(fold.split(a)) & set(fold.split(b)))
            if both:
                report.error(
                    "fold overlap", f"fold {k}: {len(both)} ID(s) in both {a} and {b}, e.g. {', '.join(both[:3])}"
                )
        tested.update(set(fold.test))
    report.info.append(
        f"{csv_path}: {len(folds)} fold(s); {len(tested)} patient(s) tested, {sum(n > 1 for n in tested.values())} in several test splits"
    )
    return len(folds)


def check_selection(
    h5_path: Path, options: DatasetOptions, splits: Mapping[str, list[str] | None], report: ValidationReport
) -> None:
    """Run the reader's selection (index.scan_file) per split and report the sample counts."""
    for split, ids in splits.items():
        with h5py.File(h5_path, "r") as f:
            wanted = list(f.keys()) if ids is None else ids
        try:
            entries = scan_file(h5_path, wanted, options)
        except ImLatentError as err:
            report.error("selection", f"{split}: {err}")
            continue
        if not entries:
            report.error(
                "selection",
                f"{split}: no samples selected from {len(wanted)} patient(s); check DS_selected_primaries, DS_every_primary and DS_sanity_filters",
            )
        else:
            n_series = len({p for p, _ in entries})
            report.info.append(
                f"selection {split}: {len(entries)} sample(s) from {n_series} series of {len({p.split('/')[0] for p, _ in entries})} patient(s)"
            )


def load_run_config(json_path: Path | None, yaml_path: Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The dataNpath JSON and the YAML ``data.dataset`` block (empty dicts when not given)."""
    import yaml

    values: dict[str, Any] = {}
    dataset: dict[str, Any] = {}
    if json_path is not None:
        try:
            values = json.loads(json_path.read_text())
        except (OSError, ValueError) as err:
            raise ImLatentError(
                f"dataNpath JSON {json_path} cannot be read ({type(err).__name__}); expected a JSON object"
            ) from None
    if yaml_path is not None:
        try:
            config = yaml.safe_load(yaml_path.read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"config YAML {yaml_path} cannot be read ({type(err).__name__})") from None
        dataset = dict((config.get("data") or {}).get("dataset") or {})
    return values, dataset


def validate(
    h5_path: Path,
    run_json: Mapping[str, Any] | None = None,
    yaml_dataset: Mapping[str, Any] | None = None,
    fold_csv: Path | None = None,
    fold_id: int = 0,
    norm_type: str = "zscore",
    zscore_prenorm: str = "minmaxvol",
    voxels: bool = True,
) -> ValidationReport:
    """All checks; ``run_json`` DS_* keys + ``yaml_dataset`` select series like the datamodule would."""
    report = ValidationReport()
    run_json = dict(run_json or {})
    norm_type = str(run_json.get("norm_type", norm_type))
    zscore_prenorm = str(run_json.get("zscore_prenorm", zscore_prenorm) or "")
    need_minmax = "vol" in norm_type or "vol" in zscore_prenorm
    with h5py.File(h5_path, "r") as f:
        check_layout(f, need_minmax, voxels, report)
        patients = set(f.keys())
    fold = None
    if fold_csv is not None and check_folds(fold_csv, patients, report):
        try:
            fold = read_folds(fold_csv, fold_id, disjoint=False)  # check_folds reported overlaps
        except ImLatentError as err:
            report.error("folds", str(err))
    if run_json or yaml_dataset:
        ds_keys = {k[3:]: v for k, v in run_json.items() if k.startswith("DS_")}
        try:
            options = merge_dataset_options(norm_type, zscore_prenorm, yaml_dataset, ds_keys)
        except ImLatentError as err:
            report.error("options", str(err))
            return report
        splits: dict[str, list[str] | None] = {"all": None} if fold is None else {s: fold.split(s) for s in SPLITS}
        check_selection(h5_path, options, splits, report)
    return report


def fold_csv_of(run_json: Mapping[str, Any], datadir: Path) -> Path | None:
    """The fold CSV named by the JSON (None when ``foldCSV`` is falsy)."""
    value = run_json.get("foldCSV", "")
    return datadir / str(value) if fold_csv_given(value) else None
