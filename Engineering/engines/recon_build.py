"""ReconEngine plumbing for modelID 0: hparams/YAML -> PythaeStation (pythae.md §7 init), batch -> model inputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from Engineering.errors import ConfigError
from Engineering.science.losses import PERCEPTUAL_LOSSES, perceptual_loss_spec
from Engineering.transforms import parse_shape
from Engineering.warp_drives.pythae.station import WRAPPER_MODES, PythaeStation

#: hparams copied into model configs that learn phenotypes / confounders (the original's ``additional_nitems``)
COUNT_KEYS = ("n_phenotypes", "n_confounders", "n_confounders_bincat", "n_confounders_mulcat", "n_confounders_cont")
#: batch keys handed to the model next to ``data`` (§1.4)
SIDE_KEYS = ("phenotypes", "confounders_continuous", "confounders_binary", "confounders_multicat")
#: predict outputs written as ``<tag>.h5`` (§7)
EXTRA_PREDICTIONS = ("pheno_pred", "conf_pred")


def build_station(hp: Mapping[str, Any], config: Mapping[str, Any]) -> PythaeStation:
    """Build the pythae station from the flat hparams and the YAML dict (§7 init, §2.3)."""
    model_cfg = config.get("model", {}) or {}
    latent = model_cfg.get("latent_dim")
    wrapper = int(hp.get("pythae_wrapper_mode", 0) or 0)
    if wrapper not in WRAPPER_MODES:
        raise ConfigError(
            f"--pythae_wrapper_mode {wrapper} is unknown; valid: "
            + ", ".join(f"{k} ({v})" for k, v in WRAPPER_MODES.items())
        )
    counts = {k: int(hp[k]) for k in COUNT_KEYS if hp.get(k) is not None}
    pythae_cfg = dict(model_cfg.get("pythae") or {})
    loss_id = int(hp.get("lossID", 0))
    if loss_id in PERCEPTUAL_LOSSES:  # as the original: the perceptual loss becomes the custom reconstruction loss
        path, params = perceptual_loss_spec(loss_id, hp)
        pythae_cfg.update(custom_loss_class=path, custom_loss_params=params)
    return PythaeStation.from_options(
        str(hp.get("pythae_model", "factor_vae")),
        parse_shape(hp.get("input_shape", "56,128,128")),
        int(hp.get("in_channels", 1)),
        bool(int(hp.get("is3D", 1))),
        int(latent) if latent is not None else None,
        pythae_cfg,
        str(hp.get("pythae_config", "") or ""),
        counts=counts,
        wrapper_mode=wrapper,
    )


def batch_extras(batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Model inputs besides ``data``: ``mask`` (``inp.mask``), ``phenotypes`` and ``confounders_*`` when present."""
    extras: dict[str, torch.Tensor] = {}
    mask = batch["inp"].get("mask") if isinstance(batch["inp"], Mapping) else None
    if mask is not None:
        extras["mask"] = mask
    for key in SIDE_KEYS:
        if batch.get(key) is not None:
            extras[key] = batch[key]
    return extras
