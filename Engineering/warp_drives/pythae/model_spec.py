"""What the pythae drive knows about one model: its classes, how it trains, which losses it accepts.

Kept apart from the registry so that the custom models can describe themselves without importing the registry
that lists them.
"""

from __future__ import annotations

from dataclasses import dataclass

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
        trainer_mode: ``base`` | ``adversarial`` | ``coupled`` | ``coupled_adversarial``.
        head: encoder head, ``ae`` | ``vae`` | ``svae`` | ``vqvae``.
        recon_losses: accepted ``reconstruction_loss`` values, or ``None`` when the model computes its own
            reconstruction term and ignores the setting (ae, wae, rae_*, vqvae, vaegan, msssim_vae).
        needs_grad_in_eval: the forward takes autograd gradients (hvae, rhvae, rae_gp), so validation and
            predict must run with gradients on (this extends the original's rhvae-only ``valgrads``).
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
