"""In-repo (custom) pythae models, reached as ``custom_<name>`` (pythae.md §4); registered on import."""

from __future__ import annotations

from Engineering.warp_drives.pythae.custom_models.factor_vae import (
    CUSTOM_FACTOR_VAE_LOSSES,
    CustomFactorVAE,
    CustomFactorVAEConfig,
)
from Engineering.warp_drives.pythae.registry import ADVERSARIAL, ModelSpec, register_custom

register_custom(
    ModelSpec(
        key="factor_vae",
        description="FactorVAE with summed mse/bce/l1 reconstruction (custom)",
        model_cls=CustomFactorVAE,
        config_cls=CustomFactorVAEConfig,
        trainer_mode=ADVERSARIAL,
        recon_losses=CUSTOM_FACTOR_VAE_LOSSES,
        is_custom=True,
    )
)

__all__ = ["CustomFactorVAE", "CustomFactorVAEConfig"]
