"""DICOM → input HDF5.

Sources ("visits"), each becoming the group ``<patientID>/<fieldID>/<instanceID>``:

* a UK Biobank zip ``<eid>_<field>_<instance>_<array>.zip`` → ``eid/field/<instance>_<array>``;
* a folder with such a name (an unzipped bulk file) → the same;
* any other zip → ``<PatientID tag>/<--field>/<--instance>``;
* loose DICOM files elsewhere in the tree → grouped by their PatientID tag into ``<PatientID>/<--field>/<--instance>``.

Per visit, files are grouped by SeriesInstanceUID; series are processed in acquisition order (SeriesNumber, then
SeriesTime, then UID). Each series becomes a 5-D (Channel, Time, Slice, X, Y) array: Channel = distinct EchoNumbers,
Slice = distinct positions along the slice normal, Time = the frames of one (echo, position) ordered by TriggerTime,
then InstanceNumber, then file name; X = rows, Y = columns. Pixel values are the stored values (RescaleSlope/Intercept
applied only when not the identity). Unreadable files, irregular series and unmatched descriptions are skipped and
listed in the :class:`ConversionReport`; they never abort the conversion.
"""

from __future__ import annotations

import io
import logging
import os
import re
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from tqdm import tqdm

from Engineering.data.convert.config import FieldConfig, plane_from_orientation
from Engineering.data.convert.keys import KeyAssigner
from Engineering.data.convert.writer import ConversionReport, H5Writer
from Engineering.errors import DataError

log = logging.getLogger("imlatent.convert")

UKB_NAME = re.compile(r"^(?P<eid>[^_]+)_(?P<field>[^_]+)_(?P<instance>[^_]+)_(?P<array>[^_]+)$")
MANIFESTS = ("manifest.csv", "manifest.cvs")
# group attribute ← (manifest column, DICOM keyword used when there is no manifest)
GROUP_ATTRS = {
    "patientDICOMID": ("patientid", "PatientID"),
    "studyDICOMID": ("studyid", "StudyInstanceUID"),
    "studyDesc": ("study discription", "StudyDescription"),
    "aet": ("aet", None),
    "host": ("host", None),
    "date": ("date", "StudyDate"),
}
_DROPPED_GROUPS = (0x0029, 0x7FE0)  # private Siemens header and pixel data


class SeriesError(ValueError):
    """A series cannot be assembled into a 5-D array; the message says why."""


class UnsupportedImageError(SeriesError):
    """A readable DICOM image that the pipeline does not take (e.g. colour); the message says why."""


@dataclass
class Visit:
    """One future instance group and where its files come from (a zip or a list of files)."""

    patient: str
    field_id: str
    instance: str
    source: Path
    files: list[Path] = field(default_factory=list)

    @property
    def group(self) -> str:
        return f"{self.patient}/{self.field_id}/{self.instance}"


@dataclass
class Frame:
    """A decoded DICOM file."""

    name: str
    ds: Dataset
    pixels: np.ndarray


def _ukb_ids(name: str) -> tuple[str, str, str] | None:
    match = UKB_NAME.match(name)
    if match is None:
        return None
    return match["eid"], match["field"], f"{match['instance']}_{match['array']}"


def _is_candidate_file(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.name.lower() not in MANIFESTS


def _patient_tag(path: Path, report: ConversionReport) -> str | None:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError) as err:
        report.skip(str(path), f"not a readable DICOM file ({type(err).__name__})")
        return None
    pid = str(ds.get("PatientID", "") or "").strip()
    if not pid:
        report.skip(str(path), "DICOM file has no PatientID (0010,0020); expected one outside UKB-named folders")
        return None
    return pid


def find_visits(root: Path, field_id: str, instance: str, report: ConversionReport) -> list[Visit]:
    """All visits under ``root`` (a zip, a folder of zips/DICOM folders, or one DICOM folder), sorted by group."""
    if not root.exists():
        raise DataError(f"DICOM input {root} does not exist; expected a folder or a .zip file")
    zips = [root] if root.is_file() else sorted(root.rglob("*.zip"))
    visits = []
    for z in zips:
        ids = _ukb_ids(z.stem)
        visits.append(Visit(*(ids or ("", field_id, instance)), source=z))
    loose: dict[tuple[str, ...], list[Path]] = defaultdict(list)
    files = [] if root.is_file() else sorted(p for p in root.rglob("*") if _is_candidate_file(p) and p.suffix != ".zip")
    for path in files:
        named = next((a for a in [path.parent, *path.parent.parents] if _ukb_ids(a.name)), None)
        if named is not None and (named == root or root in named.parents):
            loose[(*_ukb_ids(named.name), str(named))].append(path)  # type: ignore[misc]
        elif (pid := _patient_tag(path, report)) is not None:
            loose[(pid, field_id, instance, str(root))].append(path)
    for (pid, fid, inst, src), paths in loose.items():
        visits.append(Visit(pid, fid, inst, Path(src), paths))
    return sorted(visits, key=lambda v: (v.patient, v.field_id, v.instance, str(v.source)))


def _blobs(visit: Visit) -> Iterator[tuple[str, bytes | Path]]:
    """``(name, content)`` of every file of the visit (zip members are read into memory)."""
    if visit.files:
        yield from ((str(p), p) for p in visit.files)
        return
    with zipfile.ZipFile(visit.source) as zf:
        for info in sorted(zf.infolist(), key=lambda i: i.filename):
            if not info.is_dir():
                yield f"{visit.source.name}:{info.filename}", zf.read(info)


def _read_frame(name: str, blob: bytes | Path) -> Frame:
    ds = pydicom.dcmread(io.BytesIO(blob) if isinstance(blob, bytes) else blob)
    if "PixelData" not in ds:
        raise SeriesError("no pixel data (7FE0,0010)")
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples != 1:  # an (X, Y, 3) colour array would otherwise be taken for X frames of (Y, 3)
        raise UnsupportedImageError(
            f"colour image (SamplesPerPixel {samples}, {ds.get('PhotometricInterpretation', '?')}); "
            "the pipeline takes greyscale images"
        )
    try:
        pixels = ds.pixel_array
    except Exception as err:  # pydicom raises many types for undecodable pixel data
        raise SeriesError(f"pixel data cannot be decoded ({type(err).__name__}: {err})") from None
    slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    if (slope, intercept) != (1.0, 0.0):
        pixels = pixels * np.float32(slope) + np.float32(intercept)
    return Frame(name, ds, pixels)


def _read_manifest(name: str, blob: bytes | Path, report: ConversionReport) -> pd.DataFrame | None:
    try:
        return pd.read_csv(io.BytesIO(blob) if isinstance(blob, bytes) else blob, dtype=str, on_bad_lines="skip")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        report.skip(name, f"manifest cannot be read ({type(err).__name__}); group attributes come from DICOM tags")
        return None


def load_visit(visit: Visit, report: ConversionReport) -> tuple[list[Frame], pd.DataFrame | None]:
    """Decode every DICOM file of the visit; unreadable files are reported and skipped."""
    frames: list[Frame] = []
    manifest = None
    manifest_files = [] if not visit.files else [p for p in visit.files[0].parent.iterdir() if p.name in MANIFESTS]
    for name, blob in [*((str(p), p) for p in manifest_files), *_blobs(visit)]:
        if Path(name.split(":")[-1]).name.lower() in MANIFESTS:
            manifest = _read_manifest(name, blob, report) if manifest is None else manifest
            continue
        try:
            frames.append(_read_frame(name, blob))
        except InvalidDicomError:
            report.skip(name, "not a DICOM file (no DICM preamble)")
        except UnsupportedImageError as err:
            report.skip(name, f"not converted: {err}")
        except (SeriesError, OSError, ValueError, AttributeError, KeyError) as err:
            report.skip(name, f"unreadable DICOM: {err}")
    return frames, manifest


def _text(value: Any) -> str:
    if value is None:  # an empty element (e.g. a numeric VR with no value) reads as "" like GDCM, not "None"
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    return str(value)


def dicom_header(ds: Dataset) -> dict[str, str]:
    """``{"gggg|eeee": value}`` of the top-level elements (sequences, binary values, group 0029 and pixels left out)."""
    header = {}
    for elem in ds:
        if elem.tag.group in _DROPPED_GROUPS or elem.VR == "SQ" or isinstance(elem.value, bytes):
            continue
        header[f"{elem.tag.group:04x}|{elem.tag.element:04x}"] = _text(elem.value)
    return header


def _orientation(ds: Dataset) -> list[float] | None:
    iop = ds.get("ImageOrientationPatient")
    return [float(v) for v in iop] if iop is not None and len(iop) == 6 else None


def _slice_position(ds: Dataset) -> float:
    iop, ipp = _orientation(ds), ds.get("ImagePositionPatient")
    if iop is None or ipp is None or len(ipp) != 3:
        return 0.0
    normal = np.cross(np.asarray(iop[:3]), np.asarray(iop[3:]))
    return round(float(np.dot(normal, np.asarray([float(v) for v in ipp]))), 3)


def _time_key(frame: Frame) -> tuple[float, int, str]:
    ds = frame.ds
    return float(ds.get("TriggerTime", 0) or 0), int(ds.get("InstanceNumber", 0) or 0), frame.name


def stack_series(frames: list[Frame], config: FieldConfig) -> np.ndarray:
    """The 5-D (Channel, Time, Slice, X, Y) array of one series (module docstring); SeriesError if irregular."""
    cells: dict[tuple[float, float], list[tuple[Any, np.ndarray]]] = defaultdict(list)
    for frame in frames:
        echo = float(_text(frame.ds.get("EchoNumbers", 0) or 0).split("\\")[0])
        pos, tkey = _slice_position(frame.ds), _time_key(frame)
        px = frame.pixels
        if px.ndim == 2:
            cells[(echo, pos)].append((tkey, px))
        elif px.ndim == 3 and config.is_dynamic is False:  # multi-frame volume: frames are slices
            for n, img in enumerate(px):
                cells[(echo, pos + n)].append((tkey, img))
        elif px.ndim == 3:  # multi-frame cine: frames are time points
            cells[(echo, pos)].extend(((tkey, n), img) for n, img in enumerate(px))
        else:
            raise SeriesError(f"{frame.name} has pixel array shape {px.shape}; expected 2-D or multi-frame greyscale")
    echoes = sorted({e for e, _ in cells})
    positions = sorted({p for _, p in cells})
    counts = {len(v) for v in cells.values()}
    if len(cells) != len(echoes) * len(positions) or len(counts) != 1:
        raise SeriesError(
            f"irregular series: {len(echoes)} echo(es) × {len(positions)} position(s) with "
            f"{sorted(counts)} frame(s) per cell; expected the same frames at every echo and position"
        )
    shapes = {img.shape for v in cells.values() for _, img in v}
    if len(shapes) != 1:
        raise SeriesError(f"frames have different in-plane sizes {sorted(shapes)}; expected one size")
    grid = [
        [[img for _, img in sorted(cells[(e, p)], key=lambda c: c[0])] for p in positions] for e in echoes
    ]  # [C][S][T] of (X, Y)
    return np.transpose(np.asarray(grid), (0, 2, 1, 3, 4))  # (C, S, T, X, Y) -> (C, T, S, X, Y)


def _series_order(frames: list[Frame]) -> tuple[float, str, str]:
    ds = frames[0].ds
    number = ds.get("SeriesNumber")
    return (
        (float(number) if number not in (None, "") else float("inf")),
        str(ds.get("SeriesTime", "")),
        str(ds.SeriesInstanceUID),
    )


def group_attrs(frames: list[Frame], manifest: pd.DataFrame | None, where: str, n_series: int) -> dict[str, Any]:
    """Group attributes from the manifest, else from the first file's tags; ``""`` when unknown."""
    attrs: dict[str, Any] = {}
    first = frames[0].ds
    for attr, (column, keyword) in GROUP_ATTRS.items():
        if manifest is not None and column in manifest.columns:
            values = manifest[column].dropna().unique()
            if len(values) > 1:
                log.warning("%s: manifest column %r has %d values; using the first", where, column, len(values))
            attrs[attr] = str(values[0]) if len(values) else ""
        else:
            attrs[attr] = str(first.get(keyword, "") or "") if keyword else ""
    if manifest is not None and "seriesid" in manifest.columns:
        n_series = manifest["seriesid"].dropna().nunique()
    attrs["n_series"] = np.int64(n_series)
    return attrs


def convert_visit(visit: Visit, config: FieldConfig, writer: H5Writer, report: ConversionReport) -> None:
    """Read, assemble and write one visit; every problem is reported, nothing is raised for bad data."""
    frames, manifest = load_visit(visit, report)
    by_uid: dict[str, list[Frame]] = defaultdict(list)
    for frame in frames:
        uid = str(frame.ds.get("SeriesInstanceUID", "") or "")
        if uid:
            by_uid[uid].append(frame)
        else:
            report.skip(frame.name, "no SeriesInstanceUID (0020,000E)")
    assigner = KeyAssigner(config)
    for uid, series_frames in sorted(by_uid.items(), key=lambda kv: _series_order(kv[1])):
        first = series_frames[0].ds
        desc = str(first.get("SeriesDescription", "") or "")
        where = f"{visit.group} series {uid} ({desc!r})"
        base = config.base_key(desc)
        if base is None:
            report.skip(where, "description matches no primary_data/auxiliary_data entry")
            continue
        try:
            data = stack_series(series_frames, config)
        except SeriesError as err:
            report.skip(where, str(err))
            continue
        why = config.check_axes(data.shape)
        orientation = _orientation(first)
        if why is None:
            plane = plane_from_orientation(orientation) if orientation else None
            why = assigner.add(base + config.plane_suffix(plane), desc, data, uid, dicom_header(first))
        if why is not None:
            report.skip(where, why)
    if not assigner.series:
        report.skip(f"{visit.group} ({visit.source})", "no usable series; the group is not written")
        return
    writer.write_group(visit.group, group_attrs(frames, manifest, visit.group, len(by_uid)), assigner.series)
    report.groups += 1
    report.series += len(assigner.series)


def _resolve_zip_patient(visit: Visit, report: ConversionReport) -> bool:
    """A zip without a UKB name takes its patient from the first DICOM file's PatientID."""
    if visit.patient:
        return True
    for _name, blob in _blobs(visit):
        try:
            ds = pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True)  # type: ignore[arg-type]
        except (InvalidDicomError, OSError, ValueError):
            continue
        visit.patient = str(ds.get("PatientID", "") or "").strip()
        if visit.patient:
            return True
    report.skip(str(visit.source), "zip name is not <eid>_<field>_<instance>_<array>.zip and no file has a PatientID")
    return False


def convert_dicom(
    source: str | os.PathLike[str],
    out_h5: str | os.PathLike[str],
    config: FieldConfig,
    field_id: str = "0",
    instance: str = "0_0",
    compress: bool = False,
    ignore: set[str] | None = None,
    progress: bool = True,
) -> ConversionReport:
    """Convert every visit under ``source`` into ``out_h5`` (written atomically) and return the report.

    ``ignore`` lists patient IDs to leave out. A second source for an already written group is skipped (the
    first one is kept). Raises DataError when nothing could be written.
    """
    if config.is_complex:
        raise DataError("is_complex: true is not supported by this converter; expected is_complex false")
    report = ConversionReport()
    visits = find_visits(Path(source), field_id, instance, report)
    n_patients = len({v.patient for v in visits}) or len(visits)
    with H5Writer(out_h5, compress) as writer, tqdm(total=n_patients, unit="patient", disable=not progress) as bar:
        seen: dict[str, Path] = {}
        last_patient = None
        for visit in visits:
            if visit.patient != last_patient:
                bar.update(1)
                last_patient = visit.patient
            if not _resolve_zip_patient(visit, report) or visit.patient in (ignore or set()):
                continue
            if visit.group in seen:
                report.skip(str(visit.source), f"group {visit.group} was already written from {seen[visit.group]}")
                continue
            try:
                convert_visit(visit, config, writer, report)
            except Exception as err:  # one broken source must not stop the conversion
                report.skip(str(visit.source), f"{type(err).__name__}: {err}")
            if writer.has_group(visit.group):
                seen[visit.group] = visit.source
        if report.series == 0:
            first = f"; first skip: {report.skipped[0][0]}: {report.skipped[0][1]}" if report.skipped else ""
            raise DataError(f"no series converted from {source} ({len(report.skipped)} item(s) skipped){first}")
    return report
