"""Complex Gaussian sampling, KL term and reconstruction losses of the complex models.

Notation: μ complex (B, L); log σ² real (B, L); log δ complex (B, L) (the pseudo-covariance, the encoder's
``log_psuedocovariance``). σ = exp(log σ²) and δ = exp(log δ) are the variance and pseudo-variance.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FLOAT_EPS = torch.finfo(torch.float32).eps
#: accepted reconstruction losses per complex model (first = default)
CVAE_LOSSES = ("crecon", "dualcoordsL1", "dualcoords", "polar", "basel1", "basel1mean")
CVVAE_LOSSES = ("crecon", "basel1")
CVFACTOR_LOSSES = ("crecon", "basel1", "custom", "custom_masked")


def clamp_magnitude(z: torch.Tensor, limit: float) -> torch.Tensor:
    """Complex ``z`` with |z| clamped to ``limit``, phase kept (the original's polar clamp)."""
    mag = z.abs()
    return torch.polar(mag.clamp(max=limit), z.angle())


def _rescale(delta: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
    """δ rescaled to magnitude 0.99·bound wherever |δ| ≥ bound (keeps the covariance valid)."""
    mag = delta.abs()
    return torch.where(mag >= bound, delta * (0.99 * bound / mag.clamp_min(FLOAT_EPS)), delta)


def complex_sample(
    mu: torch.Tensor, log_var: torch.Tensor, log_delta: torch.Tensor, clamp: float, eps: float = 0.0
) -> torch.Tensor:
    """z = μ + κx·εx + κy·εy with εx, εy ~ N(0, I) real (complex reparameterisation).

    κx = (σ + δ)/d and κy = i·sqrt(σ² − |δ|²)/d with d = sqrt(2σ + 2·Re δ) + eps. CVVAE uses clamp 80 and adds
    float32 eps to σ and δ; CVFactorVAE uses clamp 88 and no eps.
    """
    sigma = torch.exp(log_var.clamp(-clamp, clamp)) + eps
    delta = _rescale(torch.exp(clamp_magnitude(log_delta, clamp)) + eps, sigma)
    denom = torch.sqrt(2 * sigma + 2 * delta.real) + eps
    kappa_x = (sigma + delta) / denom
    kappa_y = 1j * torch.sqrt((sigma.pow(2) - delta.abs().pow(2)).clamp_min(0)) / denom
    return mu + kappa_x * torch.randn_like(sigma) + kappa_y * torch.randn_like(sigma)


def complex_kld(mu: torch.Tensor, log_var: torch.Tensor, log_delta: torch.Tensor) -> torch.Tensor:
    """Per-sample complex KL term (B,): Σ|μ|² + Σ|σ − 1 − ½·log(σ² − δ² + eps)|, δ² rescaled below σ²."""
    sigma = torch.exp(log_var)
    delta2 = _rescale(torch.exp(2 * log_delta), sigma.pow(2))
    det = torch.log(sigma.pow(2) - delta2 + FLOAT_EPS)
    return mu.abs().pow(2).sum(dim=-1) + (sigma - 1 - 0.5 * det).abs().sum(dim=-1)


def crecon(recon_x: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Σ|Re Δ| + Σ|Im Δ| + Σ||x| − |x̂||, summed over the **whole batch** (a scalar, as in the original)."""
    diff = recon_x - x
    return diff.real.abs().sum() + diff.imag.abs().sum() + (x.abs() - recon_x.abs()).abs().sum()


def basel1(recon_x: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-sample Σ|x̂ − x| (complex modulus): (B,)."""
    return (recon_x - x).abs().reshape(x.shape[0], -1).sum(dim=-1)


def _phase_term(recon_x: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Σ over the batch of (1 − cosine similarity of the per-sample phase vectors)."""
    cos = F.cosine_similarity(recon_x.angle().reshape(x.shape[0], -1), x.angle().reshape(x.shape[0], -1), dim=-1)
    return (1 - cos).sum()


def cvae_reconstruction(kind: str, recon_x: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The CVAE loss for ``kind`` in :data:`CVAE_LOSSES`, reduced to a scalar as the original does."""
    if kind == "crecon":
        return crecon(recon_x, x)
    if kind == "dualcoordsL1":
        return crecon(recon_x, x) + (x.angle() - recon_x.angle()).abs().sum()
    if kind == "dualcoords":
        diff = recon_x - x
        mags = (recon_x.abs() - x.abs()).abs().mean()
        return diff.real.abs().mean() + diff.imag.abs().mean() + mags + _phase_term(recon_x, x)
    if kind == "polar":
        return (recon_x.abs() - x.abs()).abs().mean() + _phase_term(recon_x, x)
    if kind == "basel1":
        return basel1(recon_x, x).mean()
    if kind == "basel1mean":
        return (recon_x - x).abs().mean()
    raise ValueError(f"reconstruction_loss={kind!r}; valid values: {', '.join(CVAE_LOSSES)}")
