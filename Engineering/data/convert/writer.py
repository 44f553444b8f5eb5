"""The HDF5 writer shared by the converters: one instance group at a time, one chunk per series, optional gzip,
atomic output (temp file in the target folder, ``os.replace`` on success), and the skip report.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from Engineering.errors import DataError
from Engineering.fileio import new_temp_file, publish

_MAX_CHUNK_BYTES = 2**32 - 1  # HDF5 limit on one chunk


@dataclass
class Series:
    """One dataset to write: ``key`` (e.g. ``primary_LAX_4Ch_transverse_0``), a 5-D (C, T, S, X, Y) array and the
    per-part metadata (``{"mag_0": uid}`` / ``{"mag_0": {tag: value}}``)."""

    key: str
    data: np.ndarray
    description: str
    series_ids: dict[str, str]
    headers: dict[str, dict[str, str]]


@dataclass
class ConversionReport:
    """What was written and what was skipped (``(where, why)`` pairs)."""

    groups: int = 0
    series: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def skip(self, where: str, why: str) -> None:
        self.skipped.append((where, why))

    def summary(self, limit: int = 50) -> str:
        """Readable multi-line summary."""
        lines = [f"wrote {self.series} series in {self.groups} instance group(s); skipped {len(self.skipped)} item(s)"]
        lines += [f"  skipped {where}: {why}" for where, why in self.skipped[:limit]]
        if len(self.skipped) > limit:
            lines.append(f"  ... and {len(self.skipped) - limit} more")
        return "\n".join(lines)


def min_max(data: np.ndarray) -> tuple[Any, Any]:
    """``min_val``/``max_val`` as numpy scalars of the data (of the magnitude for complex data)."""
    values = np.abs(data) if np.iscomplexobj(data) else data
    return values.min(), values.max()


def native_order(data: np.ndarray) -> np.ndarray:
    """``data`` in the machine's byte order: big-endian DICOM/NIfTI voxels (and their min_val/max_val) would
    otherwise be stored as big-endian HDF5 types, which every reader then has to convert (``torch.from_numpy``
    rejects them)."""
    return data if data.dtype.isnative else data.astype(data.dtype.newbyteorder("="))


def _chunks(data: np.ndarray) -> tuple[int, ...] | bool:
    """One chunk per series when HDF5 allows it, else h5py's automatic chunking."""
    return tuple(data.shape) if data.nbytes <= _MAX_CHUNK_BYTES else True


class H5Writer:
    """Context manager writing ``path`` atomically; ``compress`` turns on gzip (level 4)."""

    def __init__(self, path: str | os.PathLike[str], compress: bool = False) -> None:
        self.path = Path(path)
        self.compress = compress
        self._tmp: Path | None = None
        self._file: h5py.File | None = None

    def __enter__(self) -> H5Writer:
        self._tmp = new_temp_file(self.path)
        self._file = h5py.File(self._tmp, "w")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._file is not None and self._tmp is not None
        self._file.close()
        if exc_type is None:
            publish(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)

    def has_group(self, group_path: str) -> bool:
        assert self._file is not None
        return group_path in self._file

    def write_group(self, group_path: str, attrs: Mapping[str, Any], series: list[Series]) -> None:
        """Create ``pid/field/instance`` with its attributes and series; nothing is created for an empty list.

        A failure part-way (e.g. an attribute HDF5 cannot store) removes the group and any parent it left empty,
        then re-raises, so a caller that skips the source never leaves a half-written group behind.
        """
        assert self._file is not None
        if not series:
            return
        if group_path in self._file:
            raise DataError(f"group {group_path} is already in {self.path}; expected one source per instance")
        group = self._file.create_group(group_path)
        try:
            group.attrs.update(dict(attrs))
            for s in series:
                self._write_series(group, s)
        except BaseException:
            self._remove(group_path)
            raise

    def _write_series(self, group: h5py.Group, s: Series) -> None:
        data = native_order(s.data)
        ds = group.create_dataset(
            s.key,
            data=data,
            chunks=_chunks(data),
            compression="gzip" if self.compress else None,
            compression_opts=4 if self.compress else None,
        )
        lo, hi = min_max(data)
        ds.attrs.update(
            seriesID=json.dumps(s.series_ids),
            DICOMHeader=json.dumps(s.headers),
            seriesDesc=s.description,
            min_val=lo,
            max_val=hi,
        )

    def _remove(self, group_path: str) -> None:
        """Delete ``group_path`` and the parents that are left empty."""
        assert self._file is not None
        del self._file[group_path]
        parent = group_path.rsplit("/", 1)[0] if "/" in group_path else ""
        while parent and len(self._file[parent]) == 0:
            del self._file[parent]
            parent = parent.rsplit("/", 1)[0] if "/" in parent else ""
