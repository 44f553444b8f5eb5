"""Ultra models: VAE, context-encoding VAE and FactorVAE with a phenotype head.

The phenotype head (``UltraPredictor``) maps z to ``n_phenotypes`` values trained with MSE against
``inputs["phenotypes"]``; at predict time it maps μ and the engine writes ``pheno_pred.h5``. Confounder strategies
are unsupported (the original code is broken), so ``anti_confounders_strategy`` must be 0. All three
models train under manual or automatic optimisation (UltraFactorVAE: manual only, two optimisers).
"""

from __future__ import annotations

from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from pydantic.dataclasses import dataclass
from pythae.models import VAE, VAEConfig
from pythae.models.base.base_utils import ModelOutput
from torch import nn

from Engineering.errors import ConfigError
from Engineering.warp_drives.pythae.custom_models.factor_vae import (
    CustomFactorVAE,
    CustomFactorVAEConfig,
    summed_reconstruction_loss,
)
from Engineering.warp_drives.pythae.groups import OptimiserGroup

ULTRA_LOSSES = ("l1", "mse", "bce")


@dataclass
class UltraFields:
    """Fields shared by every Ultra config (phenotype head; confounder settings, strategy 0 only)."""

    anti_confounders_strategy: int = 0
    n_confounders: int = 0
    n_confounders_bincat: int = 0
    n_confounders_mulcat: int = 0
    n_confounders_cont: int = 0
    n_anti_confounder_layers: int = 2
    lambda_conf_corr_loss: float = 1.0
    learn_phenotypes: bool = False
    n_phenotypes: int = 0
    n_phenotype_layers: int = 2
    lambda_pheno_loss: float = 1.0


@dataclass
class UltraVAEConfig(VAEConfig, UltraFields):
    """UltraVAE config: ``reconstruction_loss`` ∈ l1|mse|bce (default l1), dropout ``p_do`` in the head."""

    reconstruction_loss: Literal["l1", "mse", "bce"] = "l1"
    p_do: float = 0.0


@dataclass
class UltraCEVAEConfig(UltraVAEConfig):
    """UltraCEVAE config: loss weights and the random-squares noise of the context-encoding branch."""

    ce_factor: float = 1.0
    recon_factor: float = 1.0
    vae_factor: float = 1.0
    square_size_factor: int = 2
    min_n_squares: int = 1
    max_n_squares: int = 3


@dataclass
class UltraFactorVAEConfig(CustomFactorVAEConfig, UltraFields):
    """UltraFactorVAE config: the custom FactorVAE fields plus the Ultra fields (mse/bce/l1 losses only)."""

    reconstruction_loss: Literal["l1", "mse", "bce"] = "mse"


class UltraPredictor(nn.Sequential):
    """(n_layers − 1) × [Linear(d → d/2), PReLU(0.2), Dropout] then Linear(d → n_predictions): (B, L) → (B, n)."""

    def __init__(self, latent_dim: int, n_predictions: int, n_layers: int, p_do: float = 0.0) -> None:
        if n_layers < 1 or n_predictions < 1 or latent_dim % 2 ** (n_layers - 1):
            raise ConfigError(
                f"phenotype head: n_phenotypes={n_predictions} must be ≥ 1 (set data.dataset.fetch_phenotypes: true "
                f"and DS_phenotypes, or learn_phenotypes: false), n_phenotype_layers={n_layers} ≥ 1, and "
                f"latent_dim={latent_dim} divisible by 2^(n_phenotype_layers−1)"
            )
        layers: list[nn.Module] = []
        d = latent_dim
        for _ in range(n_layers - 1):
            layers += [nn.Linear(d, d // 2), nn.PReLU(init=0.2)] + ([nn.Dropout(p_do)] if p_do > 0 else [])
            d //= 2
        super().__init__(*layers, nn.Linear(d, n_predictions))


def _setup_heads(model: nn.Module, config: Any) -> None:
    if config.anti_confounders_strategy != 0:
        raise ConfigError(
            f"anti_confounders_strategy={config.anti_confounders_strategy} is not supported (the original's "
            "adversarial confounder removal never worked and is not reproduced); valid: 0"
        )
    head = (
        UltraPredictor(config.latent_dim, config.n_phenotypes, config.n_phenotype_layers, getattr(config, "p_do", 0.0))
        if config.learn_phenotypes
        else None
    )
    model.phenotype_learner = head  # type: ignore[assignment]  # torch stubs: Module attrs typed Tensor | Module


def _pheno_terms(model: nn.Module, z: torch.Tensor, phenotypes: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """``pheno_pred`` (B, n) and ``pheno_loss`` (MSE, 0 without phenotypes) when the head is on."""
    head = cast("nn.Module | None", model.phenotype_learner)
    if head is None:
        return {}
    pred = head(z)
    loss = F.mse_loss(pred, phenotypes.to(pred)) if phenotypes is not None else pred.new_zeros(())
    return {"pheno_pred": pred, "pheno_loss": loss}


class UltraVAE(VAE):
    """VAE with summed l1/mse/bce reconstruction (no ½) and an optional phenotype head."""

    def __init__(self, model_config: UltraVAEConfig, encoder: Any = None, decoder: Any = None) -> None:
        super().__init__(model_config=model_config, encoder=encoder, decoder=decoder)
        self.model_name = "UltraVAE"
        _setup_heads(self, model_config)

    def _vae(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.encoder(x)
        mu, log_var = out.embedding, out.log_covariance
        z, _ = self._sample_gauss(mu, torch.exp(0.5 * log_var))
        kld = -0.5 * torch.sum(1 + log_var - mu.pow(2) - log_var.exp(), dim=-1)  # (B,)
        return self.decoder(z)["reconstruction"], z, kld

    def _per_sample_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        recon_x, z, kld = self._vae(x)
        recon = summed_reconstruction_loss(self.model_config.reconstruction_loss, recon_x, x)
        return recon + kld, {"recon_loss": recon.mean(), "reg_loss": kld.mean(), "recon_x": recon_x, "z": z}

    def forward(self, inputs: Any, **kwargs: Any) -> ModelOutput:
        x = inputs["data"]
        per_sample, terms = self._per_sample_loss(x)
        loss = per_sample.mean()
        pheno = _pheno_terms(self, terms["z"], inputs.get("phenotypes"))
        if pheno:
            loss = loss + self.model_config.lambda_pheno_loss * pheno["pheno_loss"]
        return ModelOutput(loss=loss, autoencoder_loss=loss, **terms, **pheno)

    def predict(self, inputs: torch.Tensor) -> ModelOutput:
        """μ, decode(μ) and, with the head, ``pheno_pred`` = head(μ)."""
        mu = self.encoder(inputs).embedding
        out = ModelOutput(embedding=mu, recon_x=self.decoder(mu)["reconstruction"])
        if self.phenotype_learner is not None:
            out["pheno_pred"] = self.phenotype_learner(mu)
        return out


class UltraCEVAE(UltraVAE):
    """Context-encoding VAE (StRegA): a second pass reconstructs x from x with random squares pasted in."""

    def square_noise(self, x: torch.Tensor) -> torch.Tensor:
        """x with 1..max_n_squares−1 random squares/cubes per sample (values U(min x, max x), overlaps summed)."""
        cfg = self.model_config
        spatial = x.shape[2:]
        max_size = max(2, min(spatial) // cfg.square_size_factor)
        noise = torch.zeros_like(x)
        lo, hi = float(x.min()), float(x.max())
        for b in range(x.shape[0]):
            size = int(torch.empty(()).uniform_(1, max_size))
            count = int(torch.empty(()).uniform_(cfg.min_n_squares, cfg.max_n_squares))
            for _ in range(count):
                corner = [int(torch.randint(0, max(1, s - size), ())) for s in spatial]
                region = tuple(slice(c, c + size) for c in corner)
                index: tuple[int | slice, ...] = (b, slice(None), *region)
                noise[index] += torch.empty(()).uniform_(lo, hi).item()
        return torch.where(noise != 0, noise, x)

    def _per_sample_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.model_config
        recon_x, z, kld = self._vae(x)
        recon = summed_reconstruction_loss(cfg.reconstruction_loss, recon_x, x)
        recon_noisy, _, _ = self._vae(self.square_noise(x))
        recon_ce = summed_reconstruction_loss(cfg.reconstruction_loss, recon_noisy, x)
        per_sample = cfg.vae_factor * (kld + cfg.recon_factor * recon) + cfg.ce_factor * recon_ce
        terms = {"recon_loss": recon.mean(), "recon_loss_ce": recon_ce.mean(), "reg_loss": kld.mean()}
        return per_sample, {**terms, "recon_x": recon_x, "z": z}


class UltraFactorVAE(CustomFactorVAE):
    """Custom FactorVAE with a phenotype head on the reconstructed half; manual optimisation only.

    The autoencoder optimiser (encoder, decoder and head) backpropagates ``autoencoder_total_loss`` =
    ``autoencoder_loss + lambda_pheno_loss·pheno_loss``; the discriminator its own loss.
    """

    def __init__(self, model_config: UltraFactorVAEConfig, encoder: Any = None, decoder: Any = None) -> None:
        super().__init__(model_config=model_config, encoder=encoder, decoder=decoder)
        _setup_heads(self, model_config)

    def forward(self, inputs: Any, **kwargs: Any) -> ModelOutput:
        out = super().forward(inputs, **kwargs)
        phenotypes = inputs.get("phenotypes")
        idx_1 = out["recon_x_indices"]
        pheno = _pheno_terms(self, out["z"], phenotypes[idx_1] if phenotypes is not None else None)
        for key, value in pheno.items():
            out[key] = value
        total = out["autoencoder_loss"]
        if pheno:
            total = total + self.model_config.lambda_pheno_loss * pheno["pheno_loss"]
        out["autoencoder_total_loss"] = total
        return out

    def optimiser_groups(self) -> list[OptimiserGroup]:
        ae_paths = ("model.encoder", "model.decoder") + (
            ("model.phenotype_learner",) if self.phenotype_learner is not None else ()
        )
        return [
            OptimiserGroup("autoencoder", ae_paths, "autoencoder_total_loss", "ae_val_loss"),
            OptimiserGroup("discriminator", ("model.discriminator",), "discriminator_loss", "discriminator_val_loss"),
        ]

    def predict(self, inputs: torch.Tensor) -> ModelOutput:
        mu = self.encoder(inputs).embedding
        out = ModelOutput(embedding=mu, recon_x=self.decoder(mu)["reconstruction"])
        if self.phenotype_learner is not None:
            out["pheno_pred"] = self.phenotype_learner(mu)
        return out
