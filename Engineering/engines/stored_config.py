"""The run's configuration and architecture inside its checkpoints, and the check that a checkpoint fits.

A changed network setting (``net_ch``, ``latent_dim``, channel multipliers, an input shape that moves the attention
level, the pythae model or its nets) is refused in one line naming the setting, instead of a long state-dict error.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from Engineering.configuration.resolve import plain
from Engineering.configuration.stored import CHECKPOINT_CONFIG_KEY
from Engineering.engines.base import BaseEngine
from Engineering.errors import CheckpointError
from Engineering.hub.checkpoints import is_deepspeed_checkpoint
from Engineering.pickle_policy import load_pickle

ARCHITECTURE_KEY = "imlatent_architecture"
"""Top-level checkpoint key holding the engine's :meth:`architecture` values (plain data)."""

#: keys whose shape may differ between a checkpoint and the engine (the engine keeps its own value)
SHAPE_FLEXIBLE = frozenset({"x_T"})


class StoreRunConfig(Callback):
    """Writes the run's resolved configuration and the engine's architecture into every checkpoint.

    Both are plain data, so ``torch.load(weights_only=True)`` reads them without running any code, and a later
    ``--resume`` or ``--load_model_4test`` can start from the configuration even without resolved_config.yaml.
    """

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = dict(document)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_CONFIG_KEY] = self.document
        architecture = getattr(pl_module, "architecture", None)
        if callable(architecture):
            checkpoint[ARCHITECTURE_KEY] = plain(architecture())


def _shown(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)


def architecture_mismatch(stored: Mapping[str, Any], asked: Mapping[str, Any]) -> str | None:
    """One clause "the checkpoint has net_ch 8, this command asks for 64" per setting both have that differs."""
    asked = plain(dict(asked))
    differences = [
        f"the checkpoint has {key} {_shown(stored[key])}, this command asks for {_shown(value)}"
        for key, value in asked.items()
        if key in stored and stored[key] != value
    ]
    return "; ".join(differences) or None


def shape_mismatch(target: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> str:
    """A short account of how two state dicts differ: shape changes (one example), missing and unexpected keys."""
    shared = [k for k in target if k in state and k not in SHAPE_FLEXIBLE]
    changed = [k for k in shared if tuple(target[k].shape) != tuple(state[k].shape)]
    missing, unexpected = len(set(target) - set(state)), len(set(state) - set(target))
    example = ""
    if changed:
        key = changed[0]
        example = f", e.g. {key} {tuple(state[key].shape)} in the checkpoint vs {tuple(target[key].shape)} here"
    return f"{len(changed)} tensors differ in shape{example}; {missing} keys missing, {unexpected} unexpected"


def _read_checkpoint(path: Path) -> dict | None:
    """The checkpoint as plain data (no code unpickled); None when only a trusted loader could read it."""
    try:
        ckpt = load_pickle(path, mmap=True)
    except CheckpointError:  # refused or unreadable: the loader that follows reports it in one line
        return None
    return ckpt if isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), Mapping) else None


def check_checkpoint_fits(engine: BaseEngine, path: Path) -> None:
    """Refuse, in one line, a checkpoint whose network differs from the engine this command built.

    The checkpoint's stored architecture is compared with the engine's and the differing settings are named; a
    checkpoint written before architectures were stored gets a short shape-based message instead. Checkpoints
    that load (equal shapes, only ``x_T`` may differ) always pass, whatever their stored values.
    """
    from Engineering.hub import match_state_dict

    path = Path(path)
    ckpt = None if is_deepspeed_checkpoint(path) else _read_checkpoint(path)
    if ckpt is None:
        return
    target = engine.state_dict()
    try:
        match_state_dict(target, ckpt["state_dict"], shape_flexible=SHAPE_FLEXIBLE)
        return
    except CheckpointError:
        pass
    stored = ckpt.get(ARCHITECTURE_KEY)
    named = architecture_mismatch(stored, engine.architecture()) if isinstance(stored, Mapping) else None
    if named:
        raise CheckpointError(f"checkpoint {path} does not fit this network: {named}")
    raise CheckpointError(f"checkpoint {path} does not fit this network: {shape_mismatch(target, ckpt['state_dict'])}")
