"""Accumulation of per-sample test results into the dense arrays of ``emb.h5``/``recon.h5``.

During testing every batch element is stored under its H5 key (``"<subID>/<fieldID>/<instanceID>/<series>"``)
and its ``(i, j, k)`` indices inside that series. At test end each key becomes one dense array of shape
``(max_i+1, max_j+1, max_k+1, *value_shape)``, pre-filled with NaN: float64, or complex64 for complex values.

One :class:`ResultHolder` collects the results of one output file. Holders of several DDP ranks are combined
on rank 0 through :meth:`ResultHolder.state` / :meth:`ResultHolder.from_state` / :meth:`ResultHolder.merge`
(the files are written once, by rank 0; the original wrote them on every rank).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from Engineering.errors import DataError

Index = tuple[int, int, int]
STATE_VERSION = 1


def as_numpy(values: torch.Tensor | np.ndarray | Sequence[Any]) -> np.ndarray:
    """A CPU numpy view of ``values``; fp16/bf16 tensors are upcast to float32 first."""
    if isinstance(values, torch.Tensor):
        t = values.detach().cpu()
        if t.dtype in (torch.float16, torch.bfloat16):
            t = t.float()
        return t.numpy()
    arr = np.asarray(values)
    return arr.astype(np.float32) if arr.dtype == np.float16 else arr


def _as_index_vector(name: str, ix: torch.Tensor | np.ndarray | Sequence[int], batch: int) -> np.ndarray:
    arr = as_numpy(ix)
    if arr.ndim != 1 or arr.shape[0] != batch:
        raise DataError(f"result index {name} has shape {tuple(arr.shape)}; expected ({batch},), one per sample")
    if arr.dtype.kind not in "iu":
        raise DataError(f"result index {name} has dtype {arr.dtype}; expected integers")
    if batch and int(arr.min()) < 0:
        raise DataError(f"result index {name} holds {int(arr.min())}; expected non-negative integers")
    return arr.astype(np.int64)


def subject_of(key: str) -> str:
    """The subject ID of an H5 key: its first ``/``-separated component."""
    return key.split("/", 1)[0]


class ResultHolder:
    """Per-sample results of one output file (e.g. the embeddings of ``emb.h5``), keyed by (H5 key, (i, j, k)).

    Args:
        rtol, atol: a (key, index) pair that arrives twice (DistributedSampler pads the last shard with repeated
            samples, possibly on another rank) must carry the same value within these tolerances; the first value
            is kept. A larger difference means two samples share one key and raises :class:`DataError`.
    """

    def __init__(self, rtol: float = 1e-3, atol: float = 1e-4) -> None:
        self.rtol = rtol
        self.atol = atol
        self._entries: dict[str, dict[Index, np.ndarray]] = {}

    # ------------------------------------------------------------------ adding
    def add(
        self,
        keys: Sequence[str],
        indices: Sequence[torch.Tensor | np.ndarray | Sequence[int]],
        values: torch.Tensor | np.ndarray,
        only_subjects: Collection[str] | None = None,
    ) -> int:
        """Store one batch.

        Args:
            keys: B H5 keys ``"<subID>/<fieldID>/<instanceID>/<series>"``.
            indices: three sequences (i, j, k) of length B: the sample's position inside its series.
            values: (B, ...) array or tensor; ``values[b]`` is the sample's result (e.g. (L,) latent).
            only_subjects: if given, keep only samples whose subject ID (first key component) is *exactly* one
                of these (recon.h5 subject selection; an exact match, unlike the original's substring test).

        Returns:
            The number of samples stored.
        """
        keys = list(keys)
        batch = len(keys)
        if len(indices) != 3:
            raise DataError(f"result indices hold {len(indices)} sequences; expected 3, (i, j, k)")
        ii, jj, kk = (_as_index_vector(n, ix, batch) for n, ix in zip("ijk", indices, strict=True))
        vals = as_numpy(values)
        if vals.ndim == 0 or vals.shape[0] != batch:
            raise DataError(f"result values have shape {tuple(vals.shape)}; expected ({batch}, ...), one per key")
        wanted = None if only_subjects is None else set(only_subjects)
        stored = 0
        for b, key in enumerate(keys):
            if not isinstance(key, str) or not key:
                raise DataError(f"result key {key!r} at batch position {b}; expected a non-empty H5 key string")
            if wanted is not None and subject_of(key) not in wanted:
                continue
            self._put(key, (int(ii[b]), int(jj[b]), int(kk[b])), vals[b])
            stored += 1
        return stored

    def _put(self, key: str, index: Index, value: np.ndarray) -> None:
        slots = self._entries.setdefault(key, {})
        if slots:
            shape = next(iter(slots.values())).shape
            if value.shape != shape:
                raise DataError(
                    f"result key '{key}' index {index}: value shape {tuple(value.shape)} differs from "
                    f"{tuple(shape)} stored before; expected one shape per key"
                )
        old = slots.get(index)
        if old is None:
            slots[index] = np.array(value, copy=True)
            return
        if not np.allclose(old, value, rtol=self.rtol, atol=self.atol, equal_nan=True):
            diff = float(np.nanmax(np.abs(np.asarray(old, np.complex128) - np.asarray(value, np.complex128))))
            raise DataError(
                f"result key '{key}' index {index} arrived twice with different values (max |diff| {diff:.3g}); "
                "expected one sample per (key, index)"
            )

    # ------------------------------------------------------------------ inspection
    def __len__(self) -> int:
        return sum(len(slots) for slots in self._entries.values())

    def keys(self) -> list[str]:
        """The stored H5 keys, sorted (deterministic order; h5py sorts names itself)."""
        return sorted(self._entries)

    def subjects(self) -> list[str]:
        """The sorted subject IDs present."""
        return sorted({subject_of(k) for k in self._entries})

    # ------------------------------------------------------------------ output
    def to_dense(self) -> dict[str, np.ndarray]:
        """One NaN-prefilled array per key, shape (max_i+1, max_j+1, max_k+1, *value_shape).

        dtype is float64, or complex64 when any value of the key is complex.
        """
        dense: dict[str, np.ndarray] = {}
        for key in self.keys():
            slots = self._entries[key]
            idx = np.array(list(slots), dtype=np.int64)  # (n, 3)
            value_shape = next(iter(slots.values())).shape
            is_complex = any(np.iscomplexobj(v) for v in slots.values())
            dtype = np.complex64 if is_complex else np.float64
            arr = np.full((*(idx.max(axis=0) + 1), *value_shape), np.nan, dtype=dtype)
            for (i, j, k), value in slots.items():
                arr[i, j, k] = value
            dense[key] = arr
        return dense

    # ------------------------------------------------------------------ distribution
    def merge(self, other: ResultHolder) -> None:
        """Add every entry of ``other``; a (key, index) present in both must agree (see the class doc)."""
        for key in other.keys():
            for index, value in sorted(other._entries[key].items()):
                self._put(key, index, value)

    def state(self) -> dict[str, Any]:
        """A picklable snapshot (plain dicts and numpy arrays) for ``torch.distributed.gather_object``."""
        entries: dict[str, dict[str, np.ndarray]] = {}
        for key in self.keys():
            slots = self._entries[key]
            order = sorted(slots)
            entries[key] = {
                "indices": np.array(order, dtype=np.int64).reshape(len(order), 3),
                "values": np.stack([slots[ix] for ix in order]),
            }
        return {"version": STATE_VERSION, "rtol": self.rtol, "atol": self.atol, "entries": entries}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ResultHolder:
        """Rebuild a holder from :meth:`state`."""
        if not isinstance(state, Mapping) or state.get("version") != STATE_VERSION:
            version = state.get("version") if isinstance(state, Mapping) else type(state).__name__
            raise DataError(f"result-holder state version {version!r}; expected {STATE_VERSION}")
        holder = cls(rtol=float(state["rtol"]), atol=float(state["atol"]))
        for key, entry in state["entries"].items():
            for index, value in zip(entry["indices"], entry["values"], strict=True):
                holder._put(key, (int(index[0]), int(index[1]), int(index[2])), value)
        return holder

    @classmethod
    def merged(cls, holders: Iterable[ResultHolder]) -> ResultHolder:
        """One holder combining all of ``holders`` (e.g. the per-rank holders on rank 0)."""
        out = cls()
        for holder in holders:
            out.merge(holder)
        return out
