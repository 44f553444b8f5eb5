"""Series selection, the sample index and its JSON cache.

An index entry is ``(dataset path, (i, j, k))`` with path ``pid/field/instance/series``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from Engineering.data.checks import (
    Finding,
    depth_finding,
    group_finding,
    open_h5_file,
    raise_or_log,
    shape_finding,
)
from Engineering.data.options import DEFAULT_CHANNEL_DIM, DEFAULT_SLICE_DIM, DatasetOptions
from Engineering.data.store import Location, is_array, is_group, is_zarr, walk
from Engineering.errors import DataError
from Engineering.fileio import atomic_write_text

log = logging.getLogger("imlatent.data")

Entry = tuple[str, tuple[int, int, int]]
SAMPLE_DEPTH = 4
_REPEAT = re.compile(r"_(\d+)$")


def is_candidate(name: str) -> bool:
    """Only series whose name contains ``primary`` or ``auxiliary`` are considered (substring, faithful)."""
    return "primary" in name or "auxiliary" in name


def _listed(name: str, selection: list[str] | None) -> str | None:
    """The selection entry that ``name`` matches: itself, or ``name`` with every ``_0`` removed (faithful)."""
    if not selection:
        return None
    for candidate in (name, name.replace("_0", "")):
        if candidate in selection:
            return candidate
    return None


def select_series(name: str, opts: DatasetOptions, matched: set[str]) -> bool:
    """Whether the series ``name`` is kept by the name rules (sanity filters excluded).

    Selection entries that match are recorded in ``matched``.
    """
    keep = False
    if "primary" in name:
        hit = None if opts.every_primary else _listed(name, opts.selected_primaries)
        if hit is not None:
            matched.add(hit)
        keep = opts.every_primary or hit is not None
    if not keep and "auxiliary" in name:
        hit = _listed(name, opts.selected_auxiliaries)
        if hit is not None:
            matched.add(hit)
            keep = True
    if keep and not opts.include_repeatAcq:
        repeat = _REPEAT.search(name)
        keep = repeat is None or int(repeat.group(1)) == 0
    return keep


def passes_sanity(shape: Sequence[int], filters: dict[str, int] | None) -> bool:
    """``sanity_filters`` test on the raw (untransposed) shape: ``shape[k] == filters["dim<k>"]``."""
    return all(shape[int(key[3:])] == size for key, size in (filters or {}).items())


def index_entries(path: str, raw_shape: Sequence[int], opts: DatasetOptions) -> list[Entry]:
    """The ``(path, (i, j, k))`` entries of one series from its permuted (C, T, S, …) shape."""
    c, t, s = (raw_shape[a] for a in opts.permutation[:3])
    i_range = range(c) if not opts.multi_channel and c > 1 else range(1)
    j_range = range(t) if opts.split_time and t > 1 else range(1)
    k_range = range(s) if opts.split_volume and s > 1 else range(1)
    return [(path, (i, j, k)) for i in i_range for j in j_range for k in k_range]


@dataclass
class _Scan:
    """What a scan collects besides the entries: the selection entries matched and the warnings."""

    matched: set[str] = field(default_factory=set)
    findings: list[Finding] = field(default_factory=list)


def _visit_patient(h5_path: Location, f: Any, pid: str, opts: DatasetOptions, scan: _Scan) -> list[Entry]:
    entries: list[Entry] = []
    for path, obj in walk(f, pid):
        name = path.rsplit("/", 1)[-1]
        depth = path.count("/") + 1
        if not is_candidate(name):
            continue
        if is_group(obj):  # the original dropped it without a word
            if depth == SAMPLE_DEPTH and select_series(name, opts, set()):
                scan.findings.append(group_finding(h5_path, path))
            continue
        if not is_array(obj):
            continue
        if depth != SAMPLE_DEPTH:
            raise DataError(depth_finding(h5_path, path, depth).message)
        if not select_series(name, opts, scan.matched):
            continue
        if obj.ndim != 5 or passes_sanity(obj.shape, opts.sanity_filters):  # sanity_filters may skip empty series
            shape = shape_finding(h5_path, path, obj.shape)
            if shape is not None:
                raise DataError(shape.message)
            entries += index_entries(path, obj.shape, opts)
        else:
            log.debug("Skipping series %s: shape %s fails sanity_filters %s", path, obj.shape, opts.sanity_filters)
    return entries


def _file_matches(f: Any, entries: list[str]) -> tuple[dict[str, tuple[int, int]], set[str]]:
    """Over the whole file: per selection entry, (series, patients) it matches; and every series name."""
    series = [path for key in f.keys() for path, obj in walk(f, key) if is_array(obj)]
    names = {p.rsplit("/", 1)[-1] for p in series if p.count("/") + 1 == SAMPLE_DEPTH}
    counts: dict[str, tuple[int, int]] = {}
    for entry in entries:
        hits = [p for p in series if p.count("/") + 1 == SAMPLE_DEPTH and _listed(p.rsplit("/", 1)[-1], [entry])]
        counts[entry] = (len(hits), len({p.split("/", 1)[0] for p in hits}))
    return counts, {n for n in names if is_candidate(n)}


def _check_selection_matched(
    h5_path: Location, f: Any, opts: DatasetOptions, scan: _Scan, split: str, n_patients: int
) -> None:
    """A selection entry that matches nothing in the whole file is an error; one that a split lacks, a warning.

    Per-fold and incremental inference read splits that may lack a series the file holds elsewhere (item 12).
    """
    checks = [("DS_selected_auxiliaries", opts.selected_auxiliaries)]
    if not opts.every_primary:
        checks.insert(0, ("DS_selected_primaries", opts.selected_primaries))
    unmatched = [(key, s) for key, selection in checks for s in selection or [] if s not in scan.matched]
    if not unmatched:
        return
    counts, names = _file_matches(f, [s for _, s in unmatched])
    for key, entry in unmatched:
        n_series, n_pids = counts[entry]
        if not n_series:
            present = ", ".join(sorted(names)[:10]) + (", ..." if len(names) > 10 else "") or "none"
            raise DataError(
                f"{h5_path}: {key} entry {entry!r} matches no series in the file; series names present: {present}"
            )
        scan.findings.append(
            Finding(
                False,
                "selection",
                f"{split}/{entry}",
                f"{h5_path}: {key} entry {entry!r} matches no series of the {n_patients} patient(s) of the {split} "
                f"split; it matches {n_series} series of {n_pids} patient(s) in the whole file",
            )
        )


def scan_file(
    h5_path: Location,
    patient_ids: Sequence[str],
    opts: DatasetOptions,
    split: str = "all",
    findings: list[Finding] | None = None,
) -> list[Entry]:
    """Walk the selected patients of the file in h5py order and build the sample index.

    Errors raise a DataError; warnings go to ``findings`` when given (validate_h5), else to the log.
    """
    wanted = set(patient_ids)
    scan = _Scan()
    entries: list[Entry] = []
    with open_h5_file(h5_path) as f:
        present = [pid for pid in f.keys() if pid in wanted]
        missing = len(wanted) - len(present)
        if missing:
            text = f"{h5_path}: {missing} patient ID(s) of the {split} split are not in the file; they are ignored"
            scan.findings.append(Finding(False, "patients", split, text))
        for pid in present:
            entries += _visit_patient(h5_path, f, pid, opts, scan)
        if present:
            _check_selection_matched(h5_path, f, opts, scan, split, len(present))
    if findings is None:
        raise_or_log(scan.findings)
    else:
        findings.extend(scan.findings)
    return entries


def search_criteria(h5_path: Path, patient_ids: Sequence[str], opts: DatasetOptions) -> dict[str, Any]:
    """What the cache key covers: the selection plus the data file's size and mtime (invalidation)."""
    stat = h5_path.stat()
    criteria: dict[str, Any] = {
        "patientIDs": list(patient_ids),
        "every_primary": opts.every_primary,
        "selected_primaries": None if opts.every_primary else opts.selected_primaries,
        "selected_auxiliaries": opts.selected_auxiliaries,
        "include_repeatAcq": opts.include_repeatAcq,
        "combine_acquisitions": opts.combine_acquisitions,
        "datafile_size": stat.st_size,
        "datafile_mtime_ns": stat.st_mtime_ns,
    }
    if opts.channel_dim not in (None, -1, DEFAULT_CHANNEL_DIM):
        criteria["custom_channel_dim"] = opts.channel_dim
    if opts.slice_dim not in (None, -1, DEFAULT_SLICE_DIM):
        criteria["custom_slice_dim"] = opts.slice_dim
    if opts.sanity_filters:
        criteria["sanity_filters"] = opts.sanity_filters
    return criteria


def cache_path(h5_path: Path, criteria: dict[str, Any], opts: DatasetOptions) -> Path:
    """``<datadir>/<stem>_processedmeta/DSPaths[_mulChan][_splitVol][_splitTime]_MD5<md5>_SHA3<sha3>.json``.

    Only the file's ``.h5`` suffix is replaced (the original replaced every ``.h5`` in the path).
    """
    blob = json.dumps(criteria, sort_keys=True).encode()
    flags = "".join(
        tag
        for tag, on in (
            ("_mulChan", opts.multi_channel),
            ("_splitVol", opts.split_volume),
            ("_splitTime", opts.split_time),
        )
        if on
    )
    name = f"DSPaths{flags}_MD5{hashlib.md5(blob).hexdigest()}_SHA3{hashlib.sha3_256(blob).hexdigest()}.json"
    stem = h5_path.name[:-3] if h5_path.name.endswith(".h5") else h5_path.name
    return h5_path.parent / f"{stem}_processedmeta" / name


def load_cache(path: Path) -> list[Entry] | None:
    """The cached index, or None when the file is absent or unreadable."""
    try:
        raw = json.loads(path.read_text())
        return [(str(p), (int(ijk[0]), int(ijk[1]), int(ijk[2]))) for p, ijk in raw]
    except (OSError, ValueError, TypeError, IndexError):
        return None


def save_cache(path: Path, entries: list[Entry], warnings: Sequence[Finding] = ()) -> None:
    """Write the index atomically, and the scan's warnings beside it; an unwritable folder only skips the cache.

    The index file keeps the original's format (a list of [series, [i, j, k]]); the warnings go to
    ``warnings_<name>`` (a name no ``DSPaths*`` pattern matches), written first, so that a cached index never loses
    them.
    """
    try:
        atomic_write_text(warnings_path(path), json.dumps([[w.check, w.key, w.message] for w in warnings]))
        atomic_write_text(path, json.dumps([[p, list(ijk)] for p, ijk in entries]))
    except OSError as err:
        log.debug("Sample index cache not written to %s: %s", path, err)


def warnings_path(path: Path) -> Path:
    return path.with_name("warnings_" + path.name)


def load_cached_warnings(path: Path) -> list[Finding]:
    """The warnings of the scan that wrote the cached index (none for a cache written before they were kept)."""
    try:
        raw = json.loads(warnings_path(path).read_text())
        return [Finding(False, str(check), str(key), str(message)) for check, key, message in raw]
    except (OSError, ValueError, TypeError):
        return []


def build_index(
    h5_path: Location,
    patient_ids: Sequence[str],
    opts: DatasetOptions,
    use_cache: bool = True,
    split: str = "all",
    check: Callable[[list[Entry]], None] | None = None,
) -> list[Entry]:
    """Load the sample index from the cache or scan the file (and cache the result).

    ``check(entries)`` runs on every call, cached or not, and before a new cache is written: an index that fails it
    is not cached. A Zarr store is always scanned (metadata only): it has no single file to key a cache on.
    """
    cached = use_cache and not is_zarr(h5_path)
    path = cache_path(Path(h5_path), search_criteria(Path(h5_path), patient_ids, opts), opts) if cached else None
    entries = load_cache(path) if path is not None else None
    fresh = entries is None
    findings: list[Finding] = []
    if entries is None:
        entries = scan_file(h5_path, patient_ids, opts, split, findings)
    elif path is not None:
        findings = load_cached_warnings(path)  # a rerun on a cached index says what the first scan said
    raise_or_log(findings)
    if check is not None:
        check(entries)
    if fresh and path is not None:
        save_cache(path, entries, findings)
    return entries
