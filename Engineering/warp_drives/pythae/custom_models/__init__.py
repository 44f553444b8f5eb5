"""In-repo (custom) pythae models, reached as ``custom_<name>``: their table, ``CUSTOM_MODELS``."""

from __future__ import annotations

from Engineering.warp_drives.pythae.custom_models.complex_math import CVAE_LOSSES, CVFACTOR_LOSSES, CVVAE_LOSSES
from Engineering.warp_drives.pythae.custom_models.complex_models import (
    CVAE,
    CVVAE,
    CVAEConfig,
    CVFactorVAE,
    CVFactorVAEConfig,
    CVVAEConfig,
)
from Engineering.warp_drives.pythae.custom_models.factor_vae import (
    CUSTOM_FACTOR_VAE_LOSSES,
    CustomFactorVAE,
    CustomFactorVAEConfig,
)
from Engineering.warp_drives.pythae.custom_models.ivaes import iVAEs, iVAEsConfig
from Engineering.warp_drives.pythae.custom_models.ultra import (
    ULTRA_LOSSES,
    UltraCEVAE,
    UltraCEVAEConfig,
    UltraFactorVAE,
    UltraFactorVAEConfig,
    UltraVAE,
    UltraVAEConfig,
)
from Engineering.warp_drives.pythae.model_spec import ADVERSARIAL, BASE, ModelSpec

_ULTRA = (
    ("ultra_vae", "VAE with a phenotype head (custom)", UltraVAE, UltraVAEConfig, BASE),
    ("ultra_cevae", "Context-encoding VAE (StRegA) with a phenotype head (custom)", UltraCEVAE, UltraCEVAEConfig, BASE),
    ("ultra_factor_vae", "FactorVAE with a phenotype head (custom)", UltraFactorVAE, UltraFactorVAEConfig, ADVERSARIAL),
)
_COMPLEX = (
    ("complex_ae", "Complex-valued AE (custom)", CVAE, CVAEConfig, BASE, CVAE_LOSSES),
    ("complex_vae", "Complex-valued VAE (custom)", CVVAE, CVVAEConfig, BASE, CVVAE_LOSSES),
    (
        "complex_factor_vae",
        "Complex-valued FactorVAE (custom)",
        CVFactorVAE,
        CVFactorVAEConfig,
        ADVERSARIAL,
        CVFACTOR_LOSSES,
    ),
)

#: key (without ``custom_``) -> spec, in the order ``--help`` and error messages list them
CUSTOM_MODELS: dict[str, ModelSpec] = {
    spec.key: spec
    for spec in (
        ModelSpec(
            key="factor_vae",
            description="FactorVAE with summed mse/bce/l1 reconstruction (custom)",
            model_cls=CustomFactorVAE,
            config_cls=CustomFactorVAEConfig,
            trainer_mode=ADVERSARIAL,
            recon_losses=CUSTOM_FACTOR_VAE_LOSSES,
            is_custom=True,
            accepts_custom_loss=True,
        ),
        *(
            ModelSpec(key, description, model, config, mode, recon_losses=ULTRA_LOSSES, is_custom=True)
            for key, description, model, config, mode in _ULTRA
        ),
        ModelSpec(
            "ivaes", "iVAE / IDVAE / CI-iVAE (custom)", iVAEs, iVAEsConfig, BASE, recon_losses=None, is_custom=True
        ),
        *(
            ModelSpec(
                key,
                description,
                model,
                config,
                mode,
                recon_losses=losses,
                is_custom=True,
                is_complex=True,
                accepts_custom_loss="custom" in losses,
            )
            for key, description, model, config, mode, losses in _COMPLEX
        ),
    )
}

__all__ = [
    "CUSTOM_MODELS",
    "CVAE",
    "CVFactorVAE",
    "CVVAE",
    "iVAEs",
    "CustomFactorVAE",
    "CustomFactorVAEConfig",
    "UltraCEVAE",
    "UltraFactorVAE",
    "UltraVAE",
]
