"""Per-series predictions of one split (ID columns, targets, predictions), collected batch by batch.

The latent engine fills one collector per validation epoch (for its scores) and one per test run; at the end of the
test the collectors of all ranks are combined on rank 0, which writes the prediction and score tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from Engineering.outputs.distributed import gather_to_rank0


class PredictionCollector:
    """ID columns (one value per series) and arrays (one (B, ...) block per batch), in arrival order."""

    def __init__(self) -> None:
        self.ids: dict[str, list[Any]] = {}
        self.arrays: dict[str, list[np.ndarray]] = {}

    def add(self, ids: Mapping[str, Sequence[Any]], arrays: Mapping[str, np.ndarray]) -> None:
        """Store one batch: ``ids[name]`` holds B values, ``arrays[name]`` a (B, ...) array."""
        for name, block in arrays.items():
            self.arrays.setdefault(name, []).append(block)
        for name, values in ids.items():
            self.ids.setdefault(name, []).extend(values)

    @property
    def empty(self) -> bool:
        return not self.arrays

    def stacked(self) -> dict[str, np.ndarray]:
        """Each array over all batches, (N, ...)."""
        return {name: np.concatenate(blocks) for name, blocks in self.arrays.items()}

    def gathered(self) -> PredictionCollector | None:
        """Every rank's predictions in one collector on rank 0 (rank order), None elsewhere. Collective."""
        parts = gather_to_rank0({"ids": self.ids, "arrays": self.arrays})
        if parts is None:
            return None
        merged = PredictionCollector()
        for part in parts:
            for name, blocks in part["arrays"].items():
                merged.arrays.setdefault(name, []).extend(blocks)
            for name, values in part["ids"].items():
                merged.ids.setdefault(name, []).extend(values)
        return merged
