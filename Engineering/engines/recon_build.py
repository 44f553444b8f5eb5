"""ReconEngine plumbing for modelID 0: hparams/YAML -> PythaeStation, batch -> model inputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from Engineering.configuration.run_config import RunConfig
from Engineering.errors import ConfigError
from Engineering.science.losses import PERCEPTUAL_LOSSES, perceptual_loss_spec
from Engineering.warp_drives.pythae.station import WRAPPER_MODES, PythaeStation

#: batch keys handed to the model next to ``data``
SIDE_KEYS = ("phenotypes", "confounders_continuous", "confounders_binary", "confounders_multicat")
#: predict outputs written as ``<tag>.h5``
EXTRA_PREDICTIONS = ("pheno_pred", "conf_pred")


def build_station(cfg: RunConfig) -> PythaeStation:
    """Build the pythae station from the run configuration.

    The side-table counts (phenotypes, confounders) size the heads of the models that learn them.
    """
    pythae, model = cfg.pythae, cfg.model
    wrapper = pythae.pythae_wrapper_mode
    if wrapper not in WRAPPER_MODES:
        raise ConfigError(
            f"--pythae_wrapper_mode {wrapper} is unknown; valid: "
            + ", ".join(f"{k} ({v})" for k, v in WRAPPER_MODES.items())
        )
    options = dict(pythae.options)
    loss_id = cfg.training.lossID
    if loss_id in PERCEPTUAL_LOSSES:  # as the original: the perceptual loss becomes the custom reconstruction loss
        path, params = perceptual_loss_spec(loss_id, cfg)
        options.update(custom_loss_class=path, custom_loss_params=params)
    return PythaeStation.from_options(
        pythae.pythae_model,
        cfg.data.shape,
        model.in_channels,
        model.is_3d,
        model.latent_dim,
        options,
        pythae.pythae_config,
        counts=cfg.data.side_counts,
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
