"""Writing and checking the result H5 files (``emb.h5``, ``recon.h5``, ``pheno_pred.h5``).

Contract: every dataset sits at depth exactly 4,
``<subID>/<fieldID>/<instanceID>/<series>``, under plain nested groups; no compression, default contiguous storage,
no dataset attributes, no links, nothing else in the file. Consumers walk the file with ``visititems`` and split
each dataset name into exactly four parts, so any other object (an index table, a dataset at depth 3) breaks them.

Root attributes: the output contract allows extra metadata only as attributes, which no consumer reads. ``visititems``
visits groups and datasets, never attributes, and the recursive-dict and group-union consumers walk links only,
so root attributes cannot break a consumer. They are nevertheless off by default: the original writes
none, and the byte-level layout then matches it. :func:`check_emb_h5` accepts root/group attributes and
rejects dataset attributes.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from Engineering.errors import DataError
from Engineering.outputs.files import atomic_write_bytes

KEY_DEPTH = 4
SUBID_PATTERN = re.compile(r"^\d+$")
INSTANCE_PATTERN = re.compile(r"^\d+_\d+$")
_MAX_LISTED = 5


def split_key(key: str) -> tuple[str, str, str, str]:
    """``"<subID>/<fieldID>/<instanceID>/<series>"`` → its four components; :class:`DataError` otherwise."""
    parts = key.split("/") if isinstance(key, str) else []
    if len(parts) != KEY_DEPTH or not all(parts):
        raise DataError(
            f"result key {key!r} has {len(parts)} '/'-separated components (empty ones included); "
            "expected exactly 4 non-empty ones: <subID>/<fieldID>/<instanceID>/<series>"
        )
    return parts[0], parts[1], parts[2], parts[3]


def write_results_h5(path: Path, dense: Mapping[str, np.ndarray], attrs: Mapping[str, Any] | None = None) -> None:
    """Write one dataset per key (keys in sorted order) to ``path``, atomically replacing any existing file.

    Args:
        path: target file (``<Output>/emb.h5``); its folder is created if needed.
        dense: H5 key → array, e.g. :meth:`ResultHolder.to_dense`; an empty mapping gives an empty file.
        attrs: optional root attributes (default none, as in the original; see the module doc).

    The file is built in memory (:func:`h5_image`) and written with :func:`atomic_write_bytes`: a crash never leaves a
    half-written file under the final name, and a full disk is one :class:`OutputError` naming the file.
    """
    atomic_write_bytes(Path(path), h5_image(dense, attrs))


def h5_image(dense: Mapping[str, np.ndarray], attrs: Mapping[str, Any] | None = None) -> bytes:
    """The bytes of the HDF5 file holding ``dense`` (one dataset per key, sorted) and root ``attrs``.

    libhdf5 writes into memory here, so no disk error can reach it: on ENOSPC its close-time flush crashes the process
    or fails silently inside h5py. The image equals the file h5py would write directly (same library, same calls).
    """
    for key in dense:
        split_key(key)
    arrays = {key: np.asarray(value) for key, value in dense.items()}
    for key, arr in arrays.items():
        if arr.dtype.kind not in "fciub":
            raise DataError(f"result key '{key}' holds dtype {arr.dtype}; expected a numeric array")
    # the core driver without a backing store keeps the file in memory; its image is byte-identical to the file the
    # default driver writes (the fileobj driver is not: it lays out free space differently)
    with h5py.File(f"imlatent-{uuid.uuid4().hex}.h5", "w", driver="core", backing_store=False) as f:
        for name, value in (attrs or {}).items():
            f.attrs[name] = value
        for key in sorted(arrays):
            f.create_dataset(key, data=arrays[key])
        f.flush()
        return f.id.get_file_image()


def _listed(items: Collection[str]) -> str:
    shown = sorted(items)[:_MAX_LISTED]
    more = f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
    return ", ".join(shown) + more


def _walk(group: h5py.Group, prefix: str, problems: list[str], datasets: dict[str, h5py.Dataset]) -> None:
    """Collect the datasets below ``group`` and every structural violation (links, depth, types, empty groups)."""
    depth = prefix.count("/") + 1 if prefix else 0
    if depth and depth < KEY_DEPTH and len(group) == 0:
        problems.append(f"{prefix}: empty group at depth {depth}; expected groups only on the way to a dataset")
    for name in group:
        path = f"{prefix}/{name}" if prefix else name
        link = group.get(name, getlink=True)
        if not isinstance(link, h5py.HardLink):
            problems.append(f"{path}: {type(link).__name__}; expected no soft or external links")
            continue
        obj = group[name]
        level = depth + 1
        if isinstance(obj, h5py.Dataset):
            if level != KEY_DEPTH:
                problems.append(f"{path}: dataset at depth {level}; expected depth 4 only")
            else:
                datasets[path] = obj
        elif isinstance(obj, h5py.Group):
            if level >= KEY_DEPTH:
                problems.append(f"{path}: group at depth {level}; expected a dataset at depth 4")
            else:
                _walk(obj, path, problems, datasets)
        else:
            problems.append(f"{path}: {type(obj).__name__}; expected groups and datasets only")


def _check_dataset(key: str, ds: h5py.Dataset, latent_dim: int | None, allow_complex: bool) -> list[str]:
    problems: list[str] = []
    kinds = "fc" if allow_complex else "f"
    if ds.dtype.kind not in kinds or ds.dtype.itemsize < 4:
        expected = "float32/float64" + ("/complex" if allow_complex else "")
        problems.append(f"{key}: dtype {ds.dtype}; expected {expected}")
    if ds.ndim != 4 or 0 in ds.shape:
        problems.append(f"{key}: shape {ds.shape}; expected (nI, nJ, nK, L), (1, 1, 1, L) for whole scans")
    elif latent_dim is not None and ds.shape[-1] != latent_dim:
        problems.append(f"{key}: latent length {ds.shape[-1]}; expected {latent_dim}")
    if len(ds.attrs):
        problems.append(f"{key}: dataset attributes {_listed(list(ds.attrs))}; expected none")
    if ds.dtype.kind in "fc" and ds.size and not np.isfinite(ds[()]).all():
        problems.append(f"{key}: holds NaN or inf; expected finite values everywhere")
    sub, _, instance, _ = key.split("/")
    if not SUBID_PATTERN.match(sub):
        problems.append(f"{key}: subID '{sub}' is not a decimal integer; consumers cast it to int")
    if not INSTANCE_PATTERN.match(instance):
        problems.append(f"{key}: instanceID '{instance}'; expected '<visit>_<array>' such as '2_0'")
    return problems


def check_emb_h5(
    path: Path,
    expected_keys: Collection[str] | None = None,
    latent_dim: int | None = None,
    allow_complex: bool = False,
) -> list[str]:
    """Violations of the ``emb.h5`` contract; empty if valid.

    Checks: opens with ``swmr=True``; groups at depths 1-3, datasets at depth 4 only, no links, no empty groups;
    each dataset real float32/float64 (complex only with ``allow_complex``), 4-D, last axis ``latent_dim`` when
    given and equal across datasets, no dataset attributes, all finite; decimal subIDs and ``<visit>_<array>``
    instanceIDs; with ``expected_keys``, the set of dataset keys equals it.
    """
    path = Path(path)
    if not path.is_file():
        return [f"{path}: no such file; expected the result H5 file"]
    problems: list[str] = []
    try:
        with h5py.File(path, "r", swmr=True) as f:
            datasets: dict[str, h5py.Dataset] = {}
            _walk(f, "", problems, datasets)
            lengths: set[int] = set()
            for key in sorted(datasets):
                ds = datasets[key]
                problems.extend(_check_dataset(key, ds, latent_dim, allow_complex))
                if ds.ndim == 4:
                    lengths.add(ds.shape[-1])
    except OSError as err:
        return [f"{path}: cannot be opened with h5py swmr=True ({err}); expected a standard HDF5 file"]
    if len(lengths) > 1:
        problems.append(f"{path}: latent lengths {sorted(lengths)} differ; expected one L for every dataset")
    if expected_keys is not None:
        expected = set(expected_keys)
        missing, extra = expected - set(datasets), set(datasets) - expected
        if missing:
            problems.append(f"{path}: {len(missing)} expected dataset(s) missing: {_listed(missing)}")
        if extra:
            problems.append(f"{path}: {len(extra)} unexpected dataset(s): {_listed(extra)}")
    return problems
