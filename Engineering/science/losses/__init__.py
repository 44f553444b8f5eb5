"""Losses: engine-level reconstruction losses (``--lossID``) and custom pythae reconstruction losses."""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Mapping
from typing import Any

from torch import nn

from Engineering.configuration.run_config import RunConfig
from Engineering.errors import ConfigError
from Engineering.science.losses.recon_losses import ChannelVarWeightedLoss, MaskedReconLoss
from Engineering.science.losses.ssim import MSSSIMLoss, SSIMLoss, ms_ssim, ssim

#: lossID -> (name, factory); -1/-2 (perceptual, LPIPS) are built from the ploss_* options (perceptual_loss_spec)
ENGINE_LOSSES: dict[int, tuple[str, type[nn.Module]]] = {
    0: ("L1", nn.L1Loss),
    1: ("MSE", nn.MSELoss),
    2: ("SmoothL1", nn.SmoothL1Loss),
    3: ("MS-SSIM", MSSSIMLoss),
    4: ("SSIM", SSIMLoss),
}
PERCEPTUAL_LOSSES = {-1: "perceptual loss", -2: "LPIPS"}
#: --ploss_model's default (the in-house 3-D network); for LPIPS it means "not chosen", i.e. LPIPS's own alex trunk
DEFAULT_PLOSS_MODEL = "med1ch3D.UNetMSSDS6"

#: the original's dotted class paths -> ours (custom_loss_class in the YAML)
CUSTOM_LOSS_CLASSES: dict[str, type[nn.Module]] = {
    "Engineering.Science.losses.masked_loss.MaskedReconLoss": MaskedReconLoss,
    "Engineering.Science.losses.ChannelVarWeightedLoss": ChannelVarWeightedLoss,
    "Engineering.Science.losses.channel_var_weighted_loss.ChannelVarWeightedLoss": ChannelVarWeightedLoss,
    "MaskedReconLoss": MaskedReconLoss,
    "ChannelVarWeightedLoss": ChannelVarWeightedLoss,
}


def _choices() -> str:
    perceptual = [f"{k} {name}" for k, name in PERCEPTUAL_LOSSES.items()]
    return ", ".join(perceptual + [f"{k} {name}" for k, (name, _) in ENGINE_LOSSES.items()])


def perceptual_loss_spec(loss_id: int, cfg: RunConfig) -> tuple[str, dict[str, Any]]:
    """(class path, keyword arguments) of the ``--lossID`` -1/-2 loss from the ``ploss_*``, ``is3D`` and
    ``out_channels`` options, as the original passed them to its custom-loss hook."""
    training = cfg.training
    n_dim = 3 if cfg.model.is_3d else 2
    model = training.ploss_model or DEFAULT_PLOSS_MODEL
    if loss_id == -1:
        return "Engineering.science.losses.perceptual.PerceptualLoss", {
            "loss_model": model,
            "n_level": training.ploss_level,
            "loss_type": training.ploss_type,
            "n_channels": cfg.model.out_channels,
            "n_dim": n_dim,
            "weights_path": training.ploss_weights or None,
        }
    net = "alex" if model == DEFAULT_PLOSS_MODEL else model
    return "Engineering.science.losses.perceptual.LPIPSLoss", {"net": net, "n_dim": n_dim}


def build_engine_loss(loss_id: int, cfg: RunConfig | None = None) -> nn.Module:
    """The engine-level reconstruction loss of ``--lossID``; SSIM losses are 1 − similarity.

    ``cfg`` carries the ``ploss_*`` options of the perceptual losses (-1, -2); without one, the defaults apply.
    """
    if loss_id in PERCEPTUAL_LOSSES:
        path, kwargs = perceptual_loss_spec(loss_id, cfg or RunConfig.build("recon", {}, {}))
        return build_custom_loss(path, kwargs)
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
    "PERCEPTUAL_LOSSES",
    "ChannelVarWeightedLoss",
    "MSSSIMLoss",
    "MaskedReconLoss",
    "SSIMLoss",
    "build_custom_loss",
    "build_engine_loss",
    "ms_ssim",
    "parse_loss_params",
    "perceptual_loss_spec",
    "resolve_custom_loss_class",
    "ssim",
]
