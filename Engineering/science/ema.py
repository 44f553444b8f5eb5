"""Exponential moving average of network weights, shared by the DiffAE and latent engines."""

from __future__ import annotations

import copy
from typing import TypeVar

import torch
from torch import nn

from Engineering.errors import ConfigError

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def ema_copy(net: ModuleT) -> ModuleT:
    """A frozen, eval-mode deep copy of ``net`` to hold the exponential moving average."""
    shadow = copy.deepcopy(net)
    shadow.requires_grad_(False)
    return shadow.eval()


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, decay: float) -> None:
    """In place, for every state-dict entry: ``target ← target · decay + source · (1 − decay)``.

    No warm-up or bias correction (the EMA starts equal to the initial weights). Non-floating entries are
    copied. Call it once per optimiser step (with gradient accumulation, not once per batch; docs/differences.md D4).

    Raises:
        ConfigError: if ``decay`` is outside [0, 1].
        KeyError: if the two state dicts have different keys.
    """
    if not 0.0 <= decay <= 1.0:
        raise ConfigError(f"EMA decay must be in [0, 1], got {decay!r}")
    source_sd = source.state_dict()
    target_sd = target.state_dict()
    if source_sd.keys() != target_sd.keys():
        missing = sorted(set(source_sd) ^ set(target_sd))[:5]
        raise KeyError(f"EMA target and source differ in state-dict keys, e.g. {missing}")
    for key, value in source_sd.items():
        ema = target_sd[key]
        if ema.is_floating_point():
            ema.copy_(ema * decay + value * (1 - decay))
        else:
            ema.copy_(value)
