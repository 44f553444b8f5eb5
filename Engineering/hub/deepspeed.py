"""DeepSpeed (ZeRO) checkpoint folders: recognised, inspected and consolidated into one fp32 state dict, weights-only.

Lightning saves a DeepSpeed checkpoint as a folder (``last.ckpt/``) holding a ``latest`` file with a tag and a
``<tag>/`` folder of shards: ``*_model_states.pt`` (buffers, parameter shapes, Lightning's client state) and one
``*_optim_states.pt`` per data-parallel rank (the fp32 master weights, flattened and partitioned).

DeepSpeed's and Lightning's own converters unpickle these files with ``weights_only=False``. Here every shard is read
through :func:`Engineering.pickle_policy.load_deepspeed_part` and the weights are put together the way
DeepSpeed's ``zero_to_fp32`` does it: ZeRO 1/2 concatenate each parameter group across ranks and cut it in order;
ZeRO 3 gives every rank ``ceil(numel / world_size)`` elements of every parameter.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from Engineering.errors import CheckpointError
from Engineering.pickle_policy import NO_TRUST, TrustedFiles, deepspeed_part_problem, load_deepspeed_part

LIGHTNING_WRAPPER = "_forward_module."
"""Key prefix of Lightning's DeepSpeed wrapper around the LightningModule."""

_TAG_RE = re.compile(r"^[\w.+-]+$")


def is_deepspeed_checkpoint(path: Path) -> bool:
    """True for the folder layout DeepSpeed writes (``latest`` tag file and/or ``checkpoint/`` shards)."""
    path = Path(path)
    return path.is_dir() and ((path / "latest").is_file() or (path / "checkpoint").is_dir())


def shard_folder(folder: Path) -> Path:
    """``folder/<tag>`` where the tag is read from ``latest`` (Lightning's default tag ``checkpoint`` without it).

    Raises:
        CheckpointError: the tag is not a plain folder name inside ``folder``, or that folder does not exist.
    """
    folder = Path(folder)
    tag = "checkpoint"
    if (folder / "latest").is_file():
        tag = (folder / "latest").read_text(encoding="utf-8", errors="replace").strip()
    if not _TAG_RE.match(tag) or tag in (".", ".."):
        raise CheckpointError(
            f"DeepSpeed checkpoint {folder}: 'latest' names {tag[:80]!r}; expected a folder name such as global_step10"
        )
    shards = folder / tag
    if not shards.is_dir():
        raise CheckpointError(f"DeepSpeed checkpoint {folder}: the tag folder {tag!r} named by 'latest' is missing")
    return shards


def _natural(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def shard_files(shards: Path) -> tuple[list[Path], list[Path]]:
    """(``*_model_states.pt``, ``*_optim_states.pt``) of a tag folder, in rank order."""
    model = sorted(shards.glob("*_model_states.pt"), key=_natural)
    optim = sorted(shards.glob("*_optim_states.pt"), key=_natural)
    if not model:
        raise CheckpointError(f"DeepSpeed checkpoint folder {shards} holds no *_model_states.pt file")
    return model, optim


def deepspeed_problem(folder: Path, trust: TrustedFiles = NO_TRUST) -> None:
    """Check a DeepSpeed folder without unpickling anything: layout, and only tensors, plain data and DeepSpeed's
    known objects in every shard (:data:`~Engineering.pickle_policy.DEEPSPEED_OBJECTS`).

    Raises:
        CheckpointError: bad layout; UnsafePickleError / UnreadablePickleError for a shard.
    """
    model, optim = shard_files(shard_folder(folder))
    for path in model + optim:
        deepspeed_part_problem(path, trust)


def deepspeed_state_dict(folder: Path, trust: TrustedFiles = NO_TRUST) -> dict[str, Tensor]:
    """The consolidated fp32 state dict of a DeepSpeed checkpoint folder (Lightning's wrapper prefix removed).

    A folder without optimizer shards (ZeRO stage 0) gives the ``module`` state dict as saved, in fp32.

    Raises:
        CheckpointError: bad layout, unknown ZeRO stage, missing shards or sizes that do not add up;
            UnsafePickleError when a shard names objects beyond DeepSpeed's known ones and is not trusted.
    """
    shards = shard_folder(folder)
    model_files, optim_files = shard_files(shards)
    models = [_mapping(load_deepspeed_part(p, trust), p) for p in model_files]
    if not optim_files:
        state = {k: _fp32(v) for k, v in _mapping(models[0].get("module"), model_files[0]).items()}
    else:
        state = _from_zero(shards, models, optim_files, trust)
    return {key.removeprefix(LIGHTNING_WRAPPER): value for key, value in state.items()}


def _mapping(value: Any, path: Path) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise CheckpointError(f"DeepSpeed file {path} holds a {type(value).__name__}, expected a dict")
    return value


def _fp32(value: Any) -> Tensor:
    if not isinstance(value, Tensor):
        raise CheckpointError(f"a DeepSpeed state entry is a {type(value).__name__}, expected a tensor")
    return value.float() if value.is_floating_point() else value


def _from_zero(
    shards: Path, models: list[Mapping[str, Any]], optim_files: list[Path], trust: TrustedFiles
) -> dict[str, Tensor]:
    """Buffers, frozen and trainable parameters, and shared parameters of a ZeRO checkpoint."""
    optims = [_mapping(_mapping(load_deepspeed_part(p, trust), p).get("optimizer_state_dict"), p) for p in optim_files]
    first = optims[0]
    try:
        stage = int(first["zero_stage"])
        count = first["partition_count"]
        world = max(int(c) for c in count) if isinstance(count, Sequence) else int(count)
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise CheckpointError(f"DeepSpeed file {optim_files[0]} holds no ZeRO stage and partition count") from err
    if world != len(optim_files):
        raise CheckpointError(
            f"DeepSpeed checkpoint {shards}: {len(optim_files)} *_optim_states.pt files for {world} ranks "
            "(a shard is missing or left from another run)"
        )
    if stage not in (1, 2, 3):
        raise CheckpointError(f"DeepSpeed checkpoint {shards}: unknown ZeRO stage {stage}")
    key = "fp32_flat_groups" if stage == 3 else "single_partition_of_fp32_groups"
    groups = [_tensors(o.get(key), f"{p}: {key}") for o, p in zip(optims, optim_files, strict=True)]
    model = models[0]
    buffer_names = set(model.get("buffer_names") or ())
    module = _mapping(model.get("module"), shards)
    state: dict[str, Tensor] = {k: _fp32(v) for k, v in module.items() if k in buffer_names}
    state.update(_frozen(models, world, stage))
    shapes = [_mapping(s, shards) for s in model.get("param_shapes") or ()]
    if stage == 3:
        state.update(_zero3_params(shapes, groups, shards))
    else:
        state.update(_zero2_params(shapes, groups, first.get("param_alignment_paddings"), shards))
    for name, source in _mapping(model.get("shared_params") or {}, shards).items():
        if source in state:
            state[name] = state[source]
    return state


def _tensors(value: Any, where: str) -> list[Tensor]:
    if not isinstance(value, Sequence) or not all(isinstance(t, Tensor) for t in value):
        raise CheckpointError(f"DeepSpeed {where} is not a list of tensors")
    return [t.detach().float() for t in value]


def _numel(shape: Any) -> int:
    return int(math.prod(tuple(shape)))


def _frozen(models: list[Mapping[str, Any]], world: int, stage: int) -> dict[str, Tensor]:
    """Parameters excluded from training: whole on rank 0 (ZeRO 1/2), split over the ranks (ZeRO 3)."""
    shapes = models[0].get("frozen_param_shapes") or {}
    out = {}
    for name, shape in shapes.items():
        if stage == 3:
            parts = [m["frozen_param_fragments"][name] for m in models[:world]]
            out[name] = torch.cat(parts).narrow(0, 0, _numel(shape)).view(tuple(shape)).float()
        else:
            out[name] = _fp32(models[0]["frozen_param_fragments"][name])
    return out


def _zero2_params(
    shapes: list[Mapping[str, Any]], groups: list[list[Tensor]], paddings: Any, shards: Path
) -> dict[str, Tensor]:
    """ZeRO 1/2: each group's partitions, concatenated over the ranks, hold the parameters in order."""
    out = {}
    world = len(groups)
    for index, group_shapes in enumerate(shapes):
        flat = torch.cat([rank[index] for rank in groups])
        pads = list(paddings[index]) if paddings is not None else [0] * len(group_shapes)
        offset = 0
        for (name, shape), pad in zip(group_shapes.items(), pads, strict=True):
            numel = _numel(shape)
            if offset + numel > flat.numel():
                raise CheckpointError(f"DeepSpeed checkpoint {shards}: parameter {name} lies beyond its group's data")
            out[name] = flat.narrow(0, offset, numel).view(tuple(shape)).clone()
            offset += numel + int(pad)
        align = 2 * world  # DeepSpeed pads each group to a multiple of 2 * world_size
        if math.ceil(offset / align) * align != math.ceil(flat.numel() / align) * align:
            raise CheckpointError(
                f"DeepSpeed checkpoint {shards}: group {index} holds {flat.numel()} values, its parameters {offset}"
            )
    return out


def _zero3_params(shapes: list[Mapping[str, Any]], groups: list[list[Tensor]], shards: Path) -> dict[str, Tensor]:
    """ZeRO 3: every rank holds ``ceil(numel / world)`` values of every parameter, in order, over its flat groups."""
    world = len(groups)
    flats = [torch.cat(rank) for rank in groups]
    out = {}
    offset = 0
    for name, shape in ((n, s) for group in shapes for n, s in group.items()):
        numel = _numel(shape)
        part = math.ceil(numel / world)
        if offset + part > flats[0].numel():
            raise CheckpointError(f"DeepSpeed checkpoint {shards}: parameter {name} lies beyond the saved data")
        whole = torch.cat([flat.narrow(0, offset, part) for flat in flats])
        out[name] = whole.narrow(0, 0, numel).view(tuple(shape)).clone()
        offset += part
    if offset != flats[0].numel():
        raise CheckpointError(
            f"DeepSpeed checkpoint {shards}: the parameters take {offset * world} values, the shards hold "
            f"{flats[0].numel() * world}"
        )
    return out
