"""Deterministic demo data in the UK Biobank field-20208 layout.

``<out>/data.h5`` holds, per patient, ``<pid>/20208/2_0/primary_LAX_4Ch_transverse_0`` of shape
(1, frames, 1, size, size) uint16: a beating-heart phantom (body ellipse plus a ventricle blob whose radius follows
one cardiac cycle; size, phase, amplitude, position and intensity per patient; mild noise; values 0..4095).
Edge cases that the shipped options must filter out: a repeat ``_1``, a ``3_0`` visit with one frame fewer and a
2-chamber sagittal series. ``<out>/folds.csv`` is the fold CSV (reproducible from the seed).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from Engineering.data.folds import write_folds
from Engineering.errors import ConfigError
from Engineering.fileio import atomic_write, atomic_write_text

PHENOTYPES_TSV = "phenotypes.tsv"

FIELD = "20208"
SERIES = "primary_LAX_4Ch_transverse_0"
CENTRES = (
    ("CMR_CHEADLE", "Cheadle Imaging Centre, Manchester Road, Cheadle"),
    ("CMR_NEWCASTLE", "Newcastle Imaging Centre, Newcastle upon Tyne"),
    ("CMR_READING", "Reading Imaging Centre, Reading"),
)


@dataclass
class DemoPaths:
    """Where the demo data went, plus what the shipped options select from it."""

    datadir: Path
    data_h5: Path
    folds_csv: Path
    patient_ids: list[str] = field(default_factory=list)
    expected_keys: list[str] = field(default_factory=list)  # H5 paths the shipped JSON + config_v1 select
    phenotypes_tsv: Path | None = None  # FID, Age, Sex: targets of main_latentcls.py on the demo run


def phantom(rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    """One patient's cine: uint16 array (frames, size, size), values in 0..4095."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    cy, cx = 0.5 + rng.uniform(-0.05, 0.05, 2)
    body = ((yy - cy) / rng.uniform(0.34, 0.42)) ** 2 + ((xx - cx) / rng.uniform(0.26, 0.34)) ** 2 <= 1
    by, bx = cy + rng.uniform(-0.08, 0.08), cx + rng.uniform(-0.08, 0.08)
    r0, amp, phase = rng.uniform(0.09, 0.14), rng.uniform(0.15, 0.35), rng.uniform(0, 2 * np.pi)
    t = np.arange(frames, dtype=np.float32)
    radius = r0 * (1 + amp * np.cos(2 * np.pi * t / frames + phase))  # one cardiac cycle over the frames
    dist = np.sqrt((yy - by) ** 2 + (xx - bx) ** 2)
    blob = dist[None] <= radius[:, None, None]  # (frames, size, size)
    image = 40 + body[None] * rng.uniform(900, 1500) + blob * rng.uniform(1500, 2400)
    image = image + rng.normal(0, 30, size=blob.shape)
    return np.clip(np.rint(image), 0, 4095).astype(np.uint16)


def _series_attrs(rng: np.random.Generator, data: np.ndarray, desc: str, orient: str, centre: str) -> dict:
    uid = f"1.2.826.0.1.3680043.8.498.{rng.integers(10**11, 10**12)}"
    header = {
        "0008|0008": "ORIGINAL\\PRIMARY\\M\\ND",
        "0020|0037": orient,
        "0008|0081": centre,
        "0020|4000": f"cine;{int(rng.integers(6, 9))} cycles;retro",
    }
    return {
        "seriesID": json.dumps({"mag_0": uid}),
        "DICOMHeader": json.dumps({"mag_0": header}),
        "seriesDesc": desc,
        "min_val": int(data.min()),
        "max_val": int(data.max()),
    }


def _write_visit(
    f: h5py.File, rng: np.random.Generator, pid: str, visit: str, series: dict[str, int], size: int, day: int
) -> None:
    """One instance group with its attributes and series {name: frames}."""
    aet, address = CENTRES[int(pid) % len(CENTRES)]
    group = f.create_group(f"{pid}/{FIELD}/{visit}")
    group.attrs.update(
        patientDICOMID=f"ANON{pid}",
        studyDICOMID=f"1.2.826.0.1.3680043.{pid}.{visit[0]}",
        studyDesc="CardiacMRI",
        aet=aet,
        host=aet.split("_")[1].title(),
        date=f"20{15 + int(visit[0])}{1 + day % 12:02d}{1 + day % 28:02d}",
        n_series=np.int64(len(series)),
    )
    for name, frames in series.items():
        data = phantom(rng, frames, size)[None, :, None]  # (C=1, T, S=1, X, Y)
        sagittal = "sagittal" in name
        orient = "0\\1\\0\\0\\0\\-1" if sagittal else "1\\0\\0\\0\\1\\0"
        desc = "CINE_segmented_LAX_2Ch" if "2Ch" in name else "CINE_segmented_LAX_4Ch"
        ds = group.create_dataset(name, data=data)
        ds.attrs.update(_series_attrs(rng, data, desc, orient, address))


def _layout(ids: list[str], frames: int) -> dict[tuple[str, str], dict[str, int]]:
    """(pid, visit) → {series name: frames}, with the edge cases on fixed patients when they exist."""
    layout = {(pid, "2_0"): {SERIES: frames} for pid in ids}
    for n in (1, 2):
        if n < len(ids):
            layout[(ids[n], "3_0")] = {SERIES: frames}
    if len(ids) > 3:
        layout[(ids[3], "2_0")]["primary_LAX_4Ch_transverse_1"] = frames  # repeat acquisition
    if len(ids) > 4:
        layout[(ids[4], "3_0")] = {SERIES: frames - 1}  # fails the dim1 sanity filter
    if len(ids) > 5:
        layout[(ids[5], "2_0")]["primary_LAX_2Ch_sagittal_0"] = frames  # not selected
    return layout


def write_demo_dataset(
    out_dir: str | os.PathLike[str],
    n_patients: int = 12,
    frames: int = 50,
    size: int = 64,
    n_folds: int = 5,
    seed: int = 1701,
) -> DemoPaths:
    """Write ``data.h5`` and ``folds.csv`` into ``out_dir`` (atomically) and return their paths."""
    if n_patients < 1 or frames < 2 or size < 8:
        raise ConfigError(f"demo sizes n_patients={n_patients}, frames={frames}, size={size}; expected ≥1, ≥2, ≥8")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids = [str(1000000 + 11 * (n + 1)) for n in range(n_patients)]
    layout = _layout(ids, frames)
    rng = np.random.default_rng(seed)

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            for day, ((pid, visit), series) in enumerate(sorted(layout.items())):
                _write_visit(f, rng, pid, visit, series, size, day)

    atomic_write(out / "data.h5", write)
    folds = write_folds(out / "folds.csv", ids, n_folds, seed=seed)
    phenotypes = write_demo_phenotypes(out / PHENOTYPES_TSV, ids, seed)
    expected = [
        f"{pid}/{FIELD}/{visit}/{SERIES}" for (pid, visit), s in sorted(layout.items()) if s.get(SERIES) == frames
    ]
    return DemoPaths(out, out / "data.h5", folds, ids, expected, phenotypes)


def write_demo_phenotypes(path: Path, ids: list[str], seed: int) -> Path:
    """A tab-separated ``FID, Age, Sex`` table (the ``DS_phenotypes`` layout) for every demo patient.

    The values are random (their own generator, so ``data.h5`` stays as it was): they let the latent regressor and
    classifier run end to end on the demo, not learn anything real.
    """
    rng = np.random.default_rng(seed + 1)
    rows = [f"{pid}\t{rng.uniform(40, 70):.1f}\t{int(rng.integers(0, 2))}" for pid in ids]
    atomic_write_text(path, "FID\tAge\tSex\n" + "\n".join(rows) + "\n")
    return path


def write_series_file(path: str | os.PathLike[str], series: dict[str, np.ndarray], minmax_attrs: bool = True) -> Path:
    """Write a small HDF5 file from {"pid/field/instance/name": array}, optionally with min_val/max_val attributes.

    A helper for tests and examples; arrays are written as given (no layout checks, so bad files can be built too).
    """
    path = Path(path)
    with h5py.File(path, "w") as f:
        for key, array in series.items():
            ds = f.create_dataset(key, data=array)
            if minmax_attrs and np.issubdtype(ds.dtype, np.number):
                values = np.abs(array) if np.iscomplexobj(array) else array
                ds.attrs.update(min_val=values.min().item(), max_val=values.max().item())
    return path
