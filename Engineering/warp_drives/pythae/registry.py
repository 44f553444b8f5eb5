"""Model registry of the pythae drive (pythae.md §2.1): names → pythae model/config classes and how to train them.

Name resolution follows the original: a name containing the substring ``custom`` is a custom (in-repo) model and
loses its first ``custom_``; ``vqvae`` is no longer blocked (its ``input_dim`` now carries the channel axis).
"""

from __future__ import annotations

from dataclasses import dataclass

import pythae.models as pm

from Engineering.errors import ConfigError

BASE = "base"
ADVERSARIAL = "adversarial"
COUPLED = "coupled"
COUPLED_ADVERSARIAL = "coupled_adversarial"

PYTHAE_RECON_LOSSES = ("mse", "bce")


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry.

    Attributes:
        key: registry name without ``custom_`` (e.g. ``factor_vae``).
        description: human description (``PYTHAEMODELID``).
        model_cls / config_cls: the pythae (or custom) classes.
        trainer_mode: ``base`` | ``adversarial`` | ``coupled`` | ``coupled_adversarial`` (§2.6).
        head: encoder head, ``ae`` | ``vae`` | ``svae`` | ``vqvae`` (§2.3 step 3).
        recon_losses: accepted ``reconstruction_loss`` values, or ``None`` when the model computes its own
            reconstruction term and ignores the setting (ae, wae, rae_*, vqvae, vaegan, msssim_vae).
        needs_grad_in_eval: the forward takes autograd gradients (hvae, rhvae, rae_gp), so validation and
            predict must run with gradients on (DEFECT-9 fix extends the original's rhvae-only ``valgrads``).
        is_custom: an in-repo model reached with the ``custom_`` prefix.
        accepts_custom_loss: the model takes ``custom_recon_loss_func`` (``custom``/``custom_masked`` losses).
        is_complex: a complex-valued model; it needs (and only it may use) ``nn: cvconvnet``.
    """

    key: str
    description: str
    model_cls: type
    config_cls: type
    trainer_mode: str = BASE
    head: str = "vae"
    recon_losses: tuple[str, ...] | None = PYTHAE_RECON_LOSSES
    needs_grad_in_eval: bool = False
    is_custom: bool = False
    accepts_custom_loss: bool = False
    is_complex: bool = False

    @property
    def display_name(self) -> str:
        """Name as the user types it (``custom_`` prefix for custom models)."""
        return f"custom_{self.key}" if self.is_custom else self.key


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

CUSTOM_MODELS: dict[str, ModelSpec] = {}


def register_custom(spec: ModelSpec) -> ModelSpec:
    """Add a custom model (reached as ``custom_<key>``) to the registry and return it."""
    CUSTOM_MODELS[spec.key] = spec
    return spec


def _load_custom_models() -> None:
    """Import the custom models package, which registers its models (lazy, to avoid an import cycle)."""
    import Engineering.warp_drives.pythae.custom_models  # noqa: F401


def available_models() -> list[str]:
    """Every accepted ``--pythae_model`` name, built-in first, then ``custom_*``."""
    _load_custom_models()
    return list(PYTHAE_MODELS) + [f"custom_{k}" for k in CUSTOM_MODELS]


def resolve_model(model_name: str) -> ModelSpec:
    """Look up ``model_name`` (§2.1 rules); unknown names raise :class:`ConfigError` listing the valid ones.

    Any name containing ``custom`` is custom and loses its first ``custom_`` (FAITHFUL, DEFECT-14).
    """
    _load_custom_models()
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
