"""Gathering test results of all DDP ranks on rank 0, so each output file is written once (not once per rank)."""

from __future__ import annotations

from typing import Any

import torch.distributed as dist

from Engineering.outputs.results import ResultHolder


def gather_to_rank0(obj: Any) -> list[Any] | None:
    """Every rank's picklable ``obj`` as a list on rank 0, None on the other ranks; ``[obj]`` when not distributed.

    Collective: every rank must call it.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    gathered: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def gather_holder(holder: ResultHolder) -> ResultHolder | None:
    """The merge of every rank's ``holder`` on rank 0 (None elsewhere). Collective."""
    states = gather_to_rank0(holder.state())
    if states is None:
        return None
    return ResultHolder.merged(ResultHolder.from_state(s) for s in states)
