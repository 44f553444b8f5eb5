"""Where the series live: an HDF5 file, or a Zarr v3 store with the same layout, local or on any fsspec file system.

Both hold groups ``<patientID>/<fieldID>/<instanceID>`` with 5-D series arrays carrying ``min_val``/``max_val``
attributes. The dataset reads either through the same small API: :func:`open_store` (a handle with ``keys()``,
``[path]``, ``in`` and ``filename``), :func:`arrays_under` and :func:`is_array`. A location is a Zarr store when its
name ends in ``.zarr`` (``/data/F20208/data.zarr``, ``memory://run/data.zarr``, ``s3://bucket/data.zarr``); any
``scheme://`` location is opened through fsspec (the file system's own package must be installed, e.g. s3fs).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from Engineering.errors import DataError

ZARR_SUFFIX = ".zarr"
Location = str | Path


def is_url(location: str | os.PathLike[str]) -> bool:
    """True for ``scheme://…`` locations (fsspec)."""
    return "://" in str(location)


def is_zarr(location: str | os.PathLike[str]) -> bool:
    """True when the location names a Zarr store (``*.zarr``)."""
    return str(location).rstrip("/").endswith(ZARR_SUFFIX)


def as_location(location: str | os.PathLike[str]) -> Location:
    """URLs stay strings (``Path`` would fold ``//``), local paths become :class:`Path`."""
    return str(location) if is_url(location) else Path(location)


def join_location(folder: str | os.PathLike[str], name: str) -> Location:
    """``name`` inside ``folder``; a ``name`` that is itself a URL is used as it is."""
    if is_url(name):
        return name
    if is_url(folder):
        return f"{str(folder).rstrip('/')}/{name}"
    return Path(folder) / name


class ZarrStore:
    """Read-only root group of a Zarr v3 store with the parts of h5py's File API that the dataset uses."""

    def __init__(self, location: Location) -> None:
        import zarr

        self.filename = str(location)
        try:
            self._root = zarr.open_group(store=self.filename, mode="r")
        except Exception as err:  # noqa: BLE001 - zarr/fsspec raise many types for a missing or foreign store
            reason = " ".join(str(err).split()) or type(err).__name__
            raise DataError(
                f"data store {self.filename} cannot be opened as a Zarr v3 group ({reason}); expected a .zarr store "
                "with patientID/fieldID/instanceID groups"
            ) from None

    def keys(self) -> list[str]:
        """Top-level names, sorted as h5py lists them."""
        return sorted(self._root.keys())

    def items(self) -> list[tuple[str, Any]]:
        """Top-level (name, group) pairs, sorted."""
        return [(key, self._root[key]) for key in self.keys()]

    def __getitem__(self, path: str) -> Any:
        return self._root[path]

    def __contains__(self, path: str) -> bool:
        return path in self._root

    def close(self) -> None:
        """Nothing to release: zarr reads chunks on demand."""

    def __enter__(self) -> ZarrStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def location_exists(location: Location) -> bool:
    """Whether the file (HDF5) or store (Zarr) is there."""
    if is_url(location):
        import fsspec

        fs, path = fsspec.core.url_to_fs(str(location))
        return bool(fs.exists(path))
    path = Path(location)
    return path.is_dir() if is_zarr(path) else path.is_file()


def open_store(location: Location, **h5_kwargs: Any) -> h5py.File | ZarrStore:
    """Open the data read-only; a missing, truncated or foreign file is a one-line DataError."""
    if is_zarr(location):
        return ZarrStore(location)
    try:
        return h5py.File(location, "r", **h5_kwargs)
    except (OSError, ValueError) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise DataError(
            f"data file {location} cannot be opened as HDF5 ({reason}); expected a complete HDF5 file"
        ) from None


def is_array(obj: Any) -> bool:
    """An HDF5 dataset or a Zarr array (a series, mask or other array)."""
    if isinstance(obj, h5py.Dataset):
        return True
    zarr = sys.modules.get("zarr")  # a zarr object exists only once zarr is imported
    return zarr is not None and isinstance(obj, zarr.Array)


def is_group(obj: Any) -> bool:
    """An HDF5 group or a Zarr group."""
    if isinstance(obj, h5py.Group):
        return True
    zarr = sys.modules.get("zarr")
    return zarr is not None and isinstance(obj, zarr.Group)


def walk(handle: Any, path: str) -> list[tuple[str, Any]]:
    """``(full path, object)`` of ``path`` itself when it is an array, else of every group and array below it,
    in name order (h5py's ``visititems`` order)."""
    node = handle[path]
    if is_array(node):
        return [(path, node)]
    if isinstance(node, h5py.Group):
        found: list[tuple[str, Any]] = []
        node.visititems(lambda rel, obj: found.append((f"{path}/{rel}", obj)))
        return found
    return sorted(((f"{path}/{rel}", obj) for rel, obj in node.members(max_depth=None)), key=lambda item: item[0])


def copy_h5_to_zarr(h5_path: Location, location: Location) -> int:
    """Write every array of an HDF5 file (with its attributes) into a new Zarr v3 store; returns the array count.

    Groups' attributes are copied too, so the store holds exactly what the HDF5 file holds.
    """
    import zarr

    root = zarr.open_group(store=str(location), mode="w-")
    count = 0
    with h5py.File(h5_path, "r") as f:

        def copy(name: str, obj: Any) -> None:
            nonlocal count
            if isinstance(obj, h5py.Dataset):
                data = obj[()]
                array = root.create_array(name, shape=data.shape, dtype=data.dtype)
                array[...] = data
                target: Any = array
                count += 1
            else:
                target = root.require_group(name)
            target.attrs.update({k: _plain(v) for k, v in obj.attrs.items()})

        f.visititems(copy)
    return count


def _plain(value: Any) -> Any:
    """HDF5 attribute values as JSON-able Python values (Zarr attributes are JSON)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode()
    return value
