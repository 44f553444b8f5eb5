"""Custom FactorVAE (``custom_factor_vae``): pythae's FactorVAE with the project's losses.

Differences from pythae's class, all from the original's custom model: ``gamma`` defaults to 0.5 (pythae: 2.0);
the reconstruction term is a per-sample sum with **no ½** for ``mse``, and ``l1`` (Σ|x̂−x|) is available.
The forward is pythae's: ``idx_1`` (the second half of a random permutation, the larger one for odd B,
as in the original) is reconstructed, ``idx_2`` feeds the permuted-latent discriminator batch.
``custom``/``custom_masked`` call the injected ``custom_recon_loss_func(recon_x, x[, mask])`` (a per-sample
loss such as :class:`~Engineering.science.losses.MaskedReconLoss`); the mask comes from ``inputs["mask"]``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic.dataclasses import dataclass
from pythae.models import FactorVAE as PythaeFactorVAE
from pythae.models import FactorVAEConfig as PythaeFactorVAEConfig
from pythae.models.base.base_utils import ModelOutput

CUSTOM_FACTOR_VAE_LOSSES = ("mse", "bce", "l1", "custom", "custom_masked")
SUMMED_LOSSES = ("mse", "bce", "l1")


@dataclass
class CustomFactorVAEConfig(PythaeFactorVAEConfig):
    """Config of the custom FactorVAE: pythae's fields, ``gamma=0.5``, ``reconstruction_loss`` ∈ mse|bce|l1."""

    reconstruction_loss: Literal["bce", "mse", "l1", "custom", "custom_masked"] = "mse"
    gamma: float = 0.5
    discriminator_input_dim: tuple[int, ...] | None = None


def summed_reconstruction_loss(kind: str, recon_x: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-sample summed reconstruction error (B,) for ``mse`` (no ½), ``bce`` or ``l1``."""
    recon_flat, x_flat = recon_x.reshape(x.shape[0], -1), x.reshape(x.shape[0], -1)
    if kind == "mse":
        return F.mse_loss(recon_flat, x_flat, reduction="none").sum(dim=-1)
    if kind == "bce":
        return F.binary_cross_entropy(recon_flat, x_flat, reduction="none").sum(dim=-1)
    if kind == "l1":
        return F.l1_loss(recon_flat, x_flat, reduction="none").sum(dim=-1)
    raise ValueError(f"reconstruction_loss={kind!r}; valid values: {', '.join(SUMMED_LOSSES)}")


def standard_normal_kl(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) = −½ Σ(1 + log σ² − μ² − σ²) over the last axis: (B, L) → (B,)."""
    return -0.5 * torch.sum(1 + log_var - mu.pow(2) - log_var.exp(), dim=-1)


class CustomFactorVAE(PythaeFactorVAE):
    """FactorVAE with the loss described above; ``model_name`` stays ``FactorVAE`` (adversarial trainer mode)."""

    def __init__(self, model_config: Any, encoder: Any = None, decoder: Any = None, custom_recon_loss_func: Any = None):
        super().__init__(model_config=model_config, encoder=encoder, decoder=decoder)
        loss = model_config.reconstruction_loss
        if loss in ("custom", "custom_masked") and custom_recon_loss_func is None:
            raise ValueError(f"reconstruction_loss={loss!r} needs a custom_recon_loss_func")
        self.custom_recon_loss_func = custom_recon_loss_func

    def reconstruction_loss(self, recon_x: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Per-sample reconstruction term (B,) for the configured loss."""
        kind = self.model_config.reconstruction_loss
        if kind == "custom":
            return self.custom_recon_loss_func(recon_x, x)
        if kind == "custom_masked":
            if mask is None:
                raise ValueError("reconstruction_loss='custom_masked' needs inputs['mask']")
            return self.custom_recon_loss_func(recon_x, x, mask)
        return summed_reconstruction_loss(kind, recon_x, x)

    def _encode_sample(self, x: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """Posterior statistics ``(μ, log σ²)`` (each (B, L)) and a reparameterised sample z (B, L)."""
        out = self.encoder(x)
        mu, log_var = out.embedding, out.log_covariance
        z, _ = self._sample_gauss(mu, torch.exp(0.5 * log_var))
        return (mu, log_var), z

    def kl_divergence(self, *stats: torch.Tensor) -> torch.Tensor:
        """Per-sample KL(q(z|x) ‖ N(0, I)) (B,) from the statistics of :meth:`_encode_sample`."""
        return standard_normal_kl(*stats)

    def forward(self, inputs: Any, **kwargs: Any) -> ModelOutput:
        """pythae's FactorVAE forward (halves ``idx_1``/``idx_2``), plus the mask of ``custom_masked``."""
        x_in = inputs["data"]
        if x_in.shape[0] <= 1:
            raise ArithmeticError("At least 2 samples in a batch are required for the `FactorVAE` model")
        idx = torch.randperm(x_in.shape[0], device=x_in.device)
        idx_1, idx_2 = idx[x_in.shape[0] // 2 :], idx[: x_in.shape[0] // 2]  # idx_1: the larger half (original)
        x = x_in[idx_1]
        stats, z = self._encode_sample(x)
        recon_x = self.decoder(z)["reconstruction"]
        _, z_bis = self._encode_sample(x_in[idx_2])
        z_bis_permuted = self._permute_dims(z_bis).detach()
        mask = inputs.get("mask")
        self._mask = mask[idx_1] if mask is not None else None
        return self._factor_output(recon_x, x, self.kl_divergence(*stats), z, z_bis_permuted, recon_x, idx_1)

    def _factor_output(
        self,
        scored_recon: torch.Tensor,
        scored_x: torch.Tensor,
        kld: torch.Tensor,
        z: torch.Tensor,
        z_bis_permuted: torch.Tensor,
        recon_x: torch.Tensor,
        idx_1: torch.Tensor,
    ) -> ModelOutput:
        """Losses of one FactorVAE pass (on ``scored_*``) and the output dict; clears the per-pass mask."""
        recon_loss, autoencoder_loss, discriminator_loss = self.loss_function(
            scored_recon, scored_x, kld, z, z_bis_permuted
        )
        self._mask = None
        return ModelOutput(
            loss=autoencoder_loss + discriminator_loss,
            recon_loss=recon_loss,
            autoencoder_loss=autoencoder_loss,
            discriminator_loss=discriminator_loss,
            recon_x=recon_x,
            recon_x_indices=idx_1,
            z=z,
            z_bis_permuted=z_bis_permuted,
        )

    def loss_function(
        self,
        recon_x: torch.Tensor,
        x: torch.Tensor,
        kld: torch.Tensor,
        z: torch.Tensor,
        z_bis_permuted: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return batch means of (recon, recon + KLD + γ·TC, ½·[CE(D(z), 0) + CE(D(z_perm), 1)]).

        ``kld`` is the per-sample KL term (B,); scores ``D(·)`` are (B, 2) real logits.
        """
        recon_loss = self.reconstruction_loss(recon_x, x, getattr(self, "_mask", None))
        score = self.discriminator(z)  # (B1, 2)
        tc = (score[:, 0] - score[:, 1]).mean()
        autoencoder_loss = recon_loss + kld + self.gamma * tc
        perm_score = self.discriminator(z_bis_permuted)  # (B2, 2)
        fake = torch.zeros(z.shape[0], dtype=torch.long, device=z.device)
        true = torch.ones(z_bis_permuted.shape[0], dtype=torch.long, device=z.device)
        discriminator_loss = 0.5 * (F.cross_entropy(score, fake) + F.cross_entropy(perm_score, true))
        return recon_loss.mean(dim=0), autoencoder_loss.mean(dim=0), discriminator_loss
