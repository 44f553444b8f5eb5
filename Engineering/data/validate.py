"""Check an input HDF5 file against the contract and, with a dataNpath JSON,
against what an executor run would read: the run's options come from the executors' own configuration code (same
defaults, same YAML, same overrides) and its splits go through the reader's own selection and checks
(``index.scan_file``, ``checks.check_selected``), so problems are reported with the words a run would use.
Problems are errors (the run would fail or compute something wrong) or warnings.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from Engineering.data.checks import (
    CONTRACT,
    Expectation,
    Finding,
    check_selected,
    depth_finding,
    group_finding,
    no_samples_message,
    open_h5_file,
    series_findings,
    voxels_message,
)
from Engineering.data.folds import SPLITS, read_folds
from Engineering.data.index import SAMPLE_DEPTH, is_candidate, scan_file
from Engineering.data.options import DatasetOptions
from Engineering.errors import ImLatentError

_MASKS = ("meta_mask_0", "meta_mask")
_SHOULD = ("seriesID", "DICOMHeader", "seriesDesc")
_VOXEL_BLOCK = 2**24  # elements read at a time when scanning for NaN/inf


@dataclass
class ValidationReport:
    """Errors, warnings and informational lines, each tagged with a check name.

    Findings about the same series and check are kept once (the whole-file contract pass and the run's selection
    pass may both see a series): the error over the warning, else the later one, so the run's words win.
    """

    findings: dict[tuple[str, str, str], Finding] = field(default_factory=dict)
    info: list[str] = field(default_factory=list)

    def add(self, finding: Finding) -> None:
        slot = (finding.check, finding.key, finding.message if finding.key == "*" else "")
        kept = self.findings.get(slot)
        if kept is None or finding.error >= kept.error:
            self.findings[slot] = finding

    def error(self, check: str, message: str) -> None:
        self.add(Finding(True, check, "*", message))

    def warn(self, check: str, message: str) -> None:
        self.add(Finding(False, check, "*", message))

    @property
    def errors(self) -> list[tuple[str, str]]:
        return [(x.check, x.message) for x in self.findings.values() if x.error]

    @property
    def warnings(self) -> list[tuple[str, str]]:
        return [(x.check, x.message) for x in self.findings.values() if not x.error]

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


@dataclass
class RunSelection:
    """What an executor run reads from the file: dataset options, expectation and the split patient IDs."""

    h5_path: Path
    options: DatasetOptions
    expect: Expectation
    splits: dict[str, list[str] | None]
    fold_csv: Path | None


def _has_bad_voxels(ds: h5py.Dataset) -> bool:
    if not np.issubdtype(ds.dtype, np.inexact):
        return False
    step = max(1, _VOXEL_BLOCK // max(1, int(np.prod(ds.shape[1:]))))
    return any(not np.isfinite(ds[i : i + step]).all() for i in range(0, ds.shape[0], step))


def _contract_series(h5_path: Path, path: str, ds: h5py.Dataset, voxels: bool, report: ValidationReport) -> None:
    """The per-series checks a run makes (without a run's options) plus the contract's attributes and voxels."""
    found = series_findings(h5_path, path, ds, CONTRACT)
    for finding in found:
        report.add(finding)
    if any(x.error for x in found):
        return
    absent = [a for a in ("min_val", "max_val", *_SHOULD) if a not in ds.attrs]
    if absent:
        report.warn(
            "attributes",
            f"{path}: no {'/'.join(absent)} attribute(s) (min_val/max_val: MUST for the volumetric normalisations; the others are recommended by the data contract in README 'Your own data')",
        )
    if voxels and _has_bad_voxels(ds):
        report.error("voxels", voxels_message(h5_path, path))


def check_layout(h5_path: Path, f: h5py.File, voxels: bool, report: ValidationReport) -> list[str]:
    """Structure checks over the whole file; returns the candidate series paths."""
    series: list[str] = []
    shapes: Counter[tuple[str, str]] = Counter()
    items: list[tuple[str, Any]] = []
    f.visititems(lambda name, obj: items.append((name, obj)))
    for path, obj in items:
        depth = path.count("/") + 1
        name = path.rsplit("/", 1)[-1]
        if isinstance(obj, h5py.Group):
            if depth == SAMPLE_DEPTH and is_candidate(name):
                report.add(group_finding(h5_path, path))
            elif not any(isinstance(o, h5py.Dataset) for o in _walk(obj)):
                report.warn("empty group", f"{path}: no datasets below this group")
            continue
        if not isinstance(obj, h5py.Dataset):
            continue
        if not is_candidate(name):
            if name not in _MASKS:
                report.warn("ignored", f"{path}: name contains neither 'primary' nor 'auxiliary'; the reader skips it")
            continue
        if depth != SAMPLE_DEPTH:
            report.add(depth_finding(h5_path, path, depth))
            continue
        if not name.startswith(("primary", "auxiliary")):
            report.warn("name", f"{path}: key should start with 'primary' or 'auxiliary' (it only contains it)")
        _contract_series(h5_path, path, obj, voxels, report)
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


def check_selection(selection: RunSelection, patients: list[str], report: ValidationReport) -> None:
    """Per split, the reader's own selection (index.scan_file) and data checks (checks.check_selected)."""
    h5_path = selection.h5_path
    for split, ids in selection.splits.items():
        wanted = patients if ids is None else ids
        found: list[Finding] = []
        try:
            entries = scan_file(h5_path, wanted, selection.options, split, found)
        except ImLatentError as err:
            report.error("selection", str(err))
            continue
        for finding in found:
            report.add(finding)
        if not entries:
            report.error("selection", no_samples_message(h5_path, split, len(wanted)))
            continue
        for finding in check_selected(h5_path, (p for p, _ in entries), selection.expect):
            report.add(finding)
        n_series = len({p for p, _ in entries})
        n_patients = len({p.split("/")[0] for p, _ in entries})
        report.info.append(
            f"selection {split}: {len(entries)} sample(s) from {n_series} series of {n_patients} patient(s)"
        )


def run_selection(script: str, argv: Sequence[str]) -> RunSelection:
    """What ``Executors/main_<script>.py argv`` would read: the executor's resolution and datamodule factory."""
    from Engineering.configuration import resolve
    from Engineering.data.datamodule import H5DataModule

    cfg = resolve(script, list(argv)).cfg
    assert cfg is not None  # resolve types and checks the configuration
    dm = H5DataModule.from_config(cfg, merge_train_val=False)
    if dm.fold is None:
        return RunSelection(Path(dm.h5_path), dm.dataset_options, dm.expectation, {"all": None}, None)
    splits: dict[str, list[str] | None] = {s: dm.split_ids(s) for s in SPLITS}
    fold_csv = Path(cfg.data.datadir) / str(cfg.data.foldCSV)  # where from_config read the fold
    return RunSelection(Path(dm.h5_path), dm.dataset_options, dm.expectation, splits, fold_csv)


def validate(
    h5_path: Path,
    selection: RunSelection | None = None,
    fold_csv: Path | None = None,
    fold_id: int = 0,
    voxels: bool = True,
) -> ValidationReport:
    """The contract checks over the whole file, the fold CSV's checks and, with ``selection``, the run's checks."""
    report = ValidationReport()
    with open_h5_file(h5_path) as f:
        check_layout(h5_path, f, voxels, report)
        patients = list(f.keys())
    if fold_csv is not None:
        check_folds(fold_csv, set(patients), report)
    if selection is not None:
        check_selection(selection, patients, report)
    return report
