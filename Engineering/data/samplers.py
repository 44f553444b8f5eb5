"""Samplers of the test split."""

from __future__ import annotations

from typing import Any

import torch.distributed as dist
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler


def unrepeated_test_sampler(dataset: Any) -> UnrepeatedDistributedSampler | None:
    """Under an initialised process group of > 1 ranks, a sampler that gives each rank a disjoint, unpadded share.

    Lightning's default DistributedSampler pads the last ranks with repeated samples; the outputs are gathered on
    rank 0, so every test sample must be inferred exactly once. None when not distributed.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    return UnrepeatedDistributedSampler(dataset, shuffle=False)
