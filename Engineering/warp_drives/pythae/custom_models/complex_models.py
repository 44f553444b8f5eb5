"""Complex-valued models: ``custom_complex_ae`` (CVAE), ``custom_complex_vae`` (CVVAE) and
``custom_complex_factor_vae`` (CVFactorVAE). They need ``nn: cvconvnet``; embeddings are complex64.

The station feeds complex inputs (real data gets ``+0j``) and reports ``|recon_x|`` for real data.
The original's config default ``reconstruction_loss="mse"`` was unsupported by CVVAE/CVFactorVAE; here the default
is ``crecon`` and other values are a ConfigError naming the valid ones.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic.dataclasses import dataclass
from pythae.models import AE, VAE, AEConfig, VAEConfig
from pythae.models.base.base_utils import ModelOutput
from torch import nn

from Engineering.warp_drives.pythae.custom_models.complex_math import (
    CVFACTOR_LOSSES,
    FLOAT_EPS,
    basel1,
    complex_kld,
    complex_sample,
    crecon,
    cvae_reconstruction,
)
from Engineering.warp_drives.pythae.custom_models.factor_vae import CustomFactorVAE, CustomFactorVAEConfig
from Engineering.warp_drives.pythae.nn.complex_layers import ComplexPair, ModReLU, ModSigmoid


@dataclass
class CVAEConfig(AEConfig):
    """Complex AE config: ``reconstruction_loss`` ∈ crecon|dualcoordsL1|dualcoords|polar|basel1|basel1mean."""

    reconstruction_loss: Literal["crecon", "dualcoordsL1", "dualcoords", "polar", "basel1", "basel1mean"] = "crecon"


@dataclass
class CVVAEConfig(VAEConfig):
    """Complex VAE config: ``reconstruction_loss`` ∈ crecon|basel1."""

    reconstruction_loss: Literal["crecon", "basel1"] = "crecon"  # type: ignore[assignment]


@dataclass
class CVFactorVAEConfig(CustomFactorVAEConfig):
    """Complex FactorVAE config: the custom FactorVAE fields, ``reconstruction_loss`` ∈ crecon|basel1|custom(_masked)."""

    reconstruction_loss: Literal["crecon", "basel1", "custom", "custom_masked"] = "crecon"  # type: ignore[assignment]


def complex_recon(kind: str, recon_x: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``crecon`` (batch-summed scalar) or ``basel1`` (per-sample (B,))."""
    return crecon(recon_x, x) if kind == "crecon" else basel1(recon_x, x)


class CVAE(AE):
    """Complex AE: z = the (VAE) encoder's complex μ, log σ² ignored; loss = the chosen complex recon loss."""

    def __init__(self, model_config: CVAEConfig, encoder: Any = None, decoder: Any = None) -> None:
        super().__init__(model_config=model_config, encoder=encoder, decoder=decoder)
        self.model_name = "AE"

    def forward(self, inputs: Any, **kwargs: Any) -> ModelOutput:
        x = inputs["data"]
        z = self.encoder(x).embedding
        recon_x = self.decoder(z)["reconstruction"]
        loss = cvae_reconstruction(self.model_config.reconstruction_loss, recon_x, x)
        return ModelOutput(loss=loss, recon_x=recon_x, z=z)


class CVVAE(VAE):
    """Complex VAE: complex reparameterisation (clamp 80, + eps), complex KL, crecon/basel1 reconstruction."""

    def __init__(self, model_config: CVVAEConfig, encoder: Any = None, decoder: Any = None) -> None:
        super().__init__(model_config=model_config, encoder=encoder, decoder=decoder)
        self.model_name = "VAE"

    def forward(self, inputs: Any, **kwargs: Any) -> ModelOutput:
        x = inputs["data"]
        out = self.encoder(x)
        stats = (out.embedding, out.log_covariance, out.log_psuedocovariance)
        z = complex_sample(*stats, clamp=80.0, eps=FLOAT_EPS)
        recon_x = self.decoder(z)["reconstruction"]
        recon = complex_recon(self.model_config.reconstruction_loss, recon_x, x)
        kld = complex_kld(*stats)
        return ModelOutput(
            loss=(recon + kld).mean(), recon_loss=recon.mean(), reg_loss=kld.mean(), recon_x=recon_x, z=z
        )


class ComplexDiscriminator(nn.Module):
    """Complex FactorVAE discriminator: complex Linear(L→1000), 4 × [modReLU, Linear(1000→1000)], modReLU,
    Linear(1000→2), modSigmoid → real scores (B, 2)."""

    def __init__(self, latent_dim: int, hidden: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [ComplexPair(lambda: nn.Linear(latent_dim, hidden))]
        for _ in range(4):
            layers += [ModReLU(), ComplexPair(lambda: nn.Linear(hidden, hidden))]
        layers += [ModReLU(), ComplexPair(lambda: nn.Linear(hidden, 2)), ModSigmoid()]
        self.layers = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z)


class CVFactorVAE(CustomFactorVAE):
    """Complex FactorVAE: custom FactorVAE loss, complex sampling (clamp 88) and KL; ``model_name`` FactorVAE."""

    def __init__(
        self,
        model_config: CVFactorVAEConfig,
        encoder: Any = None,
        decoder: Any = None,
        custom_recon_loss_func: Any = None,
    ) -> None:
        super().__init__(model_config, encoder, decoder, custom_recon_loss_func)
        self.discriminator = ComplexDiscriminator(model_config.latent_dim)

    def _encode_sample(self, x: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        out = self.encoder(x)
        stats = (out.embedding, out.log_covariance, out.log_psuedocovariance)
        return stats, complex_sample(*stats, clamp=88.0)

    def kl_divergence(self, *stats: torch.Tensor) -> torch.Tensor:
        return complex_kld(*stats)

    def reconstruction_loss(self, recon_x: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        kind = self.model_config.reconstruction_loss
        if kind in CVFACTOR_LOSSES[:2]:
            return complex_recon(kind, recon_x, x)
        return super().reconstruction_loss(recon_x, x, mask)


__all__ = ["CVAE", "CVAEConfig", "CVFactorVAE", "CVFactorVAEConfig", "CVVAE", "CVVAEConfig"]
