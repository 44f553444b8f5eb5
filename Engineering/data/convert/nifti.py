"""NIfTI (2-D to 5-D, nibabel) → input HDF5.

Files are mapped to ``patient/field/instance/key`` by a CSV (columns ``path, patient, field, instance, key``; paths
relative to the CSV's folder) or by a regular expression with named groups ``patient`` and optionally ``field``,
``instance``, ``key`` matched against the path relative to the input folder (missing groups take the defaults).

Axes: NIfTI stores ``(x, y, z[, t[, c]])``; the series is ``(Channel, Time, Slice, X, Y) = (c, t, z, x, y)``, i.e.
``np.transpose(data[..., None, None], (4, 3, 2, 0, 1))`` with missing axes kept as singletons. X = NIfTI i (x), Y =
NIfTI j (y); voxels stay in stored order (no reorientation) unless ``canonical`` (nibabel's closest RAS+). The
stored dtype is kept (scl_slope/inter are applied only when set). Attributes: ``seriesID`` ``{"mag_0": <path>}``,
``DICOMHeader`` ``{"mag_0": {"affine", "pixdim", "descrip", "qform_code", "sform_code"}}``, ``seriesDesc`` (descrip,
else the file name), ``min_val``/``max_val``; group attributes ``date`` etc. are ``""`` and ``n_series`` is counted.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import cast

import nibabel as nib
import numpy as np
import pandas as pd
from nibabel.arrayproxy import ArrayProxy
from tqdm import tqdm

from Engineering.data.convert.writer import ConversionReport, H5Writer, Series
from Engineering.errors import ConfigError, DataError

CSV_COLUMNS = ("path", "patient", "field", "instance", "key")
_KEY = re.compile(r"^(primary|auxiliary)(_[A-Za-z0-9]+)*$")
Target = tuple[str, str, str, str]  # patient, field, instance, key


def to_5d(data: np.ndarray) -> np.ndarray:
    """NIfTI ``(x, y[, z[, t[, c]]])`` → ``(c, t, z, x, y)`` with singleton axes kept (view, no copy)."""
    if not 2 <= data.ndim <= 5:
        raise ValueError(f"NIfTI array has {data.ndim} dimensions {data.shape}; expected 2 to 5 (x, y, z, t, c)")
    full = data.reshape(data.shape + (1,) * (5 - data.ndim))
    return np.transpose(full, (4, 3, 2, 0, 1))


def map_from_csv(csv_path: Path) -> list[tuple[Path, Target]]:
    """Rows of the mapping CSV as ``(file, (patient, field, instance, key))``."""
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ConfigError(f"mapping CSV {csv_path} cannot be read ({type(err).__name__})") from None
    missing = [c for c in CSV_COLUMNS if c not in table.columns]
    if missing:
        raise ConfigError(
            f"mapping CSV {csv_path} lacks column(s) {', '.join(missing)}; expected {','.join(CSV_COLUMNS)}"
        )
    return [
        (csv_path.parent / r["path"], (r["patient"], r["field"], r["instance"], r["key"])) for _, r in table.iterrows()
    ]


def map_from_regex(root: Path, pattern: str, field_id: str, instance: str, key: str) -> list[tuple[Path, Target]]:
    """Every ``*.nii``/``*.nii.gz`` under ``root`` whose relative path matches ``pattern`` (``re.search``)."""
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise ConfigError(f"--pattern {pattern!r} is not a regular expression ({err})") from None
    if "patient" not in regex.groupindex:
        raise ConfigError(f"--pattern {pattern!r} has no named group (?P<patient>...); expected one")
    found = []
    for path in sorted(p for p in root.rglob("*") if p.name.endswith((".nii", ".nii.gz"))):
        match = regex.search(path.relative_to(root).as_posix())
        if match:
            g = match.groupdict()
            found.append(
                (path, (g["patient"], g.get("field") or field_id, g.get("instance") or instance, g.get("key") or key))
            )
    return found


def _header(img: nib.Nifti1Image) -> dict[str, str]:
    hdr = img.header
    return {
        "affine": json.dumps(np.round(img.affine, 6).tolist()),
        "pixdim": json.dumps([float(v) for v in hdr["pixdim"][1:6]]),
        "descrip": hdr["descrip"].item().split(b"\x00")[0].decode("latin-1").strip(),  # a C string: ends at NUL
        "qform_code": str(int(hdr["qform_code"])),
        "sform_code": str(int(hdr["sform_code"])),
    }


def read_series(path: Path, key: str, canonical: bool) -> Series:
    """Load one NIfTI file as a :class:`Series`; ValueError/OSError on unreadable files."""
    img = cast(nib.Nifti1Image, nib.load(path))  # a .nii(.gz) path: Nifti1Image (or its subclass Nifti2Image)
    proxy = cast(ArrayProxy, img.dataobj)  # an image loaded from disk holds its voxels in an ArrayProxy
    slope, inter = proxy.slope, proxy.inter
    raw = np.asanyarray(proxy) if (slope, inter) != (1.0, 0.0) else proxy.get_unscaled()
    if canonical:  # reorient the stored voxels ourselves: the reoriented image holds scaled data, no proxy
        raw = nib.orientations.apply_orientation(raw, nib.orientations.io_orientation(img.affine))
        img = nib.as_closest_canonical(img)
    data = np.ascontiguousarray(to_5d(np.asarray(raw)))
    if not (np.issubdtype(data.dtype, np.number) and data.dtype != np.bool_):
        raise ValueError(f"voxel dtype {data.dtype} is not numeric")
    header = _header(img)
    return Series(key, data, header["descrip"] or path.name, {"mag_0": str(path)}, {"mag_0": header})


def convert_nifti(
    mapping: list[tuple[Path, Target]],
    out_h5: str | os.PathLike[str],
    compress: bool = False,
    canonical: bool = False,
    progress: bool = True,
) -> ConversionReport:
    """Write every mapped file into ``out_h5`` (atomically); bad files and keys are reported and skipped."""
    report = ConversionReport()
    groups: dict[tuple[str, str, str], list[Series]] = defaultdict(list)
    for path, (patient, field_id, instance, key) in tqdm(mapping, unit="file", disable=not progress):
        where = f"{path} → {patient}/{field_id}/{instance}/{key}"
        if (
            not _KEY.match(key)
            or not all((patient, field_id, instance))
            or "/" in "".join((patient, field_id, instance))
        ):
            report.skip(
                where,
                "expected non-empty patient/field/instance without '/' and a key primary[_tag..] or auxiliary_<tag>[..]",
            )
            continue
        if any(s.key == key for s in groups[(patient, field_id, instance)]):
            report.skip(where, "key already written from another file")
            continue
        try:
            groups[(patient, field_id, instance)].append(read_series(path, key, canonical))
        except (OSError, ValueError, nib.filebasedimages.ImageFileError) as err:
            report.skip(where, f"unreadable NIfTI ({type(err).__name__}: {err})")
    if not any(groups.values()):
        first = f"; first skip: {report.skipped[0][0]}: {report.skipped[0][1]}" if report.skipped else ""
        raise DataError(
            f"no NIfTI series converted ({len(mapping)} file(s) mapped, {len(report.skipped)} skipped){first}"
        )
    attrs = {a: "" for a in ("patientDICOMID", "studyDICOMID", "studyDesc", "aet", "host", "date")}
    with H5Writer(out_h5, compress) as writer:
        for (patient, field_id, instance), series in sorted(groups.items()):
            if series:
                writer.write_group(
                    f"{patient}/{field_id}/{instance}", {**attrs, "n_series": np.int64(len(series))}, series
                )
                report.groups += 1
                report.series += len(series)
    return report
