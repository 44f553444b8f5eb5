"""Losses: engine-level reconstruction losses (``--lossID``) and custom pythae reconstruction losses (pythae.md §6)."""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Mapping
from typing import Any

from torch import nn

from Engineering.errors import ConfigError
from Engineering.science.losses.recon_losses import ChannelVarWeightedLoss, MaskedReconLoss
from Engineering.science.losses.ssim import MSSSIMLoss, SSIMLoss, ms_ssim, ssim

#: lossID -> (name, factory); -1/-2 (perceptual, LPIPS) need external weights and are not available here.
ENGINE_LOSSES: dict[int, tuple[str, type[nn.Module]]] = {
    0: ("L1", nn.L1Loss),
    1: ("MSE", nn.MSELoss),
    2: ("SmoothL1", nn.SmoothL1Loss),
    3: ("MS-SSIM", MSSSIMLoss),
    4: ("SSIM", SSIMLoss),
}
UNAVAILABLE_LOSSES = {-1: "perceptual loss", -2: "LPIPS"}

#: the original's dotted class paths -> ours (custom_loss_class in the YAML)
CUSTOM_LOSS_CLASSES: dict[str, type[nn.Module]] = {
    "Engineering.Science.losses.masked_loss.MaskedReconLoss": MaskedReconLoss,
    "Engineering.Science.losses.ChannelVarWeightedLoss": ChannelVarWeightedLoss,
    "Engineering.Science.losses.channel_var_weighted_loss.ChannelVarWeightedLoss": ChannelVarWeightedLoss,
    "MaskedReconLoss": MaskedReconLoss,
    "ChannelVarWeightedLoss": ChannelVarWeightedLoss,
}


def _choices() -> str:
    return ", ".join(f"{k} {name}" for k, (name, _) in ENGINE_LOSSES.items())


def build_engine_loss(loss_id: int) -> nn.Module:
    """The engine-level reconstruction loss of ``--lossID`` (pythae.md §6.4); SSIM losses are 1 − similarity."""
    if loss_id in UNAVAILABLE_LOSSES:
        raise ConfigError(
            f"--lossID {loss_id} ({UNAVAILABLE_LOSSES[loss_id]}) is not available in this implementation; "
            f"valid: {_choices()}"
        )
    if loss_id not in ENGINE_LOSSES:
        raise ConfigError(f"--lossID {loss_id} is unknown; valid: {_choices()}")
    return ENGINE_LOSSES[loss_id][1]()


def resolve_custom_loss_class(path: str) -> type[nn.Module]:
    """Map ``custom_loss_class`` to a loss class: the original's paths map to ours; other paths must be ours.

    Only ``Engineering.*`` modules are ever imported, so a config cannot make the run import arbitrary code.
    """
    name = str(path).strip()
    if name in CUSTOM_LOSS_CLASSES:
        return CUSTOM_LOSS_CLASSES[name]
    module_name, _, cls_name = name.rpartition(".")
    known = ", ".join(k for k in CUSTOM_LOSS_CLASSES if "." in k)
    if not module_name.startswith("Engineering."):
        raise ConfigError(f"custom_loss_class {name!r} is not an Engineering.* class; known: {known}")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"custom_loss_class {name!r} cannot be imported ({err}); known: {known}") from err
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConfigError(f"custom_loss_class {name!r} is not a torch.nn.Module class")
    return cls


def parse_loss_params(params: Any) -> dict[str, Any]:
    """``custom_loss_params``: a mapping, or a string parsed as a Python literal, then as ``key:value`` pairs."""
    if params in (None, ""):
        return {}
    if isinstance(params, Mapping):
        return dict(params)
    text = str(params)
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = {k: v.strip().strip("'\"") for k, v in re.findall(r"['\"]?(\w+)['\"]?\s*:\s*([^,}]+)", text)}
    if not isinstance(value, Mapping):
        raise ConfigError(f"custom_loss_params {params!r} is not a mapping of keyword arguments")
    return dict(value)


def build_custom_loss(path: str, params: Any) -> nn.Module:
    """Instantiate ``custom_loss_class`` with ``custom_loss_params``."""
    cls = resolve_custom_loss_class(path)
    kwargs = parse_loss_params(params)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"custom_loss_params {kwargs} do not fit {cls.__name__}: {err}") from err


__all__ = [
    "ENGINE_LOSSES",
    "ChannelVarWeightedLoss",
    "MSSSIMLoss",
    "MaskedReconLoss",
    "SSIMLoss",
    "build_custom_loss",
    "build_engine_loss",
    "ms_ssim",
    "parse_loss_params",
    "resolve_custom_loss_class",
    "ssim",
]
