"""Model registry of the pythae drive: names → pythae model/config classes and how to train them.

Name resolution follows the original: a name containing the substring ``custom`` is a custom (in-repo) model and
loses its first ``custom_``; ``vqvae`` is no longer blocked (its ``input_dim`` now carries the channel axis).
"""

from __future__ import annotations

import pythae.models as pm

from Engineering.errors import ConfigError
from Engineering.warp_drives.pythae.custom_models import CUSTOM_MODELS
from Engineering.warp_drives.pythae.model_spec import ADVERSARIAL, COUPLED, COUPLED_ADVERSARIAL, ModelSpec


def _spec(key: str, description: str, model: str, config: str, **kw: object) -> ModelSpec:
    return ModelSpec(key, description, getattr(pm, model), getattr(pm, config), **kw)  # type: ignore[arg-type]


PYTHAE_MODELS: dict[str, ModelSpec] = {
    s.key: s
    for s in (
        _spec("ae", "Autoencoder", "AE", "AEConfig", head="ae", recon_losses=None),
        _spec("vae", "Variational Autoencoder", "VAE", "VAEConfig"),
        _spec("beta_vae", "Beta-VAE", "BetaVAE", "BetaVAEConfig"),
        _spec("iwae", "Importance Weighted Autoencoder", "IWAE", "IWAEConfig"),
        _spec("wae", "Wasserstein Autoencoder (MMD)", "WAE_MMD", "WAE_MMD_Config", head="ae", recon_losses=None),
        _spec("info_vae", "Info-VAE (MMD)", "INFOVAE_MMD", "INFOVAE_MMD_Config"),
        _spec(
            "rae_gp",
            "RAE with gradient penalty",
            "RAE_GP",
            "RAE_GP_Config",
            head="ae",
            recon_losses=None,
            needs_grad_in_eval=True,
        ),
        _spec(
            "rae_l2",
            "RAE with L2 decoder regularisation",
            "RAE_L2",
            "RAE_L2_Config",
            head="ae",
            recon_losses=None,
            trainer_mode=COUPLED,
        ),
        _spec("vamp", "VAMP prior VAE", "VAMP", "VAMPConfig"),
        _spec("hvae", "Hamiltonian VAE", "HVAE", "HVAEConfig", needs_grad_in_eval=True),
        _spec("rhvae", "Riemannian Hamiltonian VAE", "RHVAE", "RHVAEConfig", needs_grad_in_eval=True),
        _spec("aae", "Adversarial Autoencoder", "Adversarial_AE", "Adversarial_AE_Config", trainer_mode=ADVERSARIAL),
        _spec("vaegan", "VAE-GAN", "VAEGAN", "VAEGANConfig", trainer_mode=COUPLED_ADVERSARIAL, recon_losses=None),
        _spec("vqvae", "Vector Quantized VAE", "VQVAE", "VQVAEConfig", head="vqvae", recon_losses=None),
        _spec("msssim_vae", "VAE with MS-SSIM reconstruction", "MSSSIM_VAE", "MSSSIM_VAEConfig", recon_losses=None),
        _spec("svae", "Hyperspherical VAE", "SVAE", "SVAEConfig", head="svae"),
        _spec("disentangled_beta_vae", "Disentangled Beta-VAE", "DisentangledBetaVAE", "DisentangledBetaVAEConfig"),
        _spec("factor_vae", "FactorVAE", "FactorVAE", "FactorVAEConfig", trainer_mode=ADVERSARIAL),
        _spec("beta_tc_vae", "Beta-TC-VAE", "BetaTCVAE", "BetaTCVAEConfig"),
        _spec("vae_iaf", "VAE with Inverse Autoregressive Flows", "VAE_IAF", "VAE_IAF_Config"),
        _spec("vae_lin_nf", "VAE with linear Normalising Flows", "VAE_LinNF", "VAE_LinNF_Config"),
        _spec("miwae", "Multiply Importance Weighted AE", "MIWAE", "MIWAEConfig"),
        _spec("piwae", "Partially Importance Weighted AE", "PIWAE", "PIWAEConfig"),
        _spec("ciwae", "Combination Importance Weighted AE", "CIWAE", "CIWAEConfig"),
        _spec("pvae", "Poincare-disk VAE", "PoincareVAE", "PoincareVAEConfig"),
    )
}


def available_models() -> list[str]:
    """Every accepted ``--pythae_model`` name, built-in first, then ``custom_*``."""
    return list(PYTHAE_MODELS) + [f"custom_{k}" for k in CUSTOM_MODELS]


def resolve_model(model_name: str) -> ModelSpec:
    """Look up ``model_name`` (the original's rules); unknown names raise :class:`ConfigError` listing the valid ones.

    Any name containing ``custom`` is custom and loses its first ``custom_`` (as in the original).
    """
    name = str(model_name).strip()
    if "custom" in name:
        key = name.replace("custom_", "", 1)
        table, kind = CUSTOM_MODELS, "custom"
    else:
        key, table, kind = name, PYTHAE_MODELS, "built-in pythae"
    if key not in table:
        raise ConfigError(
            f"--pythae_model {model_name!r} is not a {kind} model here; valid names: {', '.join(available_models())}"
        )
    return table[key]
