"""Plain math on semantic latents: directions, α steps in standard deviations, lerp and slerp (network-free).

A *direction* is a unit vector ŵ in latent space with the standard deviation σ of the projections ẑ·ŵ of a set
of reference latents (normally every latent of the run's emb.h5). Moving a latent by α "standard deviations"
means ``z + α·σ·ŵ``: its projection on ŵ changes by exactly α·σ, and every orthogonal component stays.

Interpolation follows the DiffAE paper (Preechakul et al. 2022, §4.1): linear on the semantic latent z_sem,
spherical on the stochastic code x_T (which is close to Gaussian noise, so its norm should stay that of noise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from Engineering.errors import ConfigError, DataError

FitMethod = Literal["ridge", "logistic"]
FIT_METHODS: tuple[FitMethod, ...] = ("ridge", "logistic")


@dataclass(frozen=True)
class Direction:
    """A unit direction in latent space and the SD of the reference latents' projections on it.

    vector: (L,) float64, unit norm; sd: σ of ``latents @ vector`` (> 0); label: what it means, for plots.
    """

    vector: np.ndarray
    sd: float
    label: str

    def offsets(self, alphas: np.ndarray | list[float]) -> np.ndarray:
        """(A, L) offsets α·σ·ŵ for the α values (in standard deviations of the projection)."""
        a = np.asarray(alphas, dtype=np.float64).reshape(-1, 1)  # (A, 1)
        return a * self.sd * self.vector[None, :]


def unit_vector(w: np.ndarray, what: str = "direction") -> np.ndarray:
    """``w`` (L,) scaled to unit norm, as float64; a zero or non-finite vector is refused."""
    w = np.asarray(w, dtype=np.float64).reshape(-1)
    norm = float(np.linalg.norm(w))
    if not np.isfinite(w).all() or norm == 0.0:
        raise DataError(f"{what} has zero length or non-finite values; it cannot define a direction")
    return w / norm


def make_direction(w: np.ndarray, latents: np.ndarray, label: str) -> Direction:
    """The :class:`Direction` of ``w`` (L,), its σ measured on ``latents`` (N, L), N ≥ 2."""
    latents = np.asarray(latents, dtype=np.float64)
    vector = unit_vector(w, label)
    if latents.ndim != 2 or latents.shape[1] != vector.size:
        raise DataError(
            f"{label}: latents of shape {latents.shape} do not match a direction of length {vector.size}; "
            "expected (N, L) with the same L"
        )
    if latents.shape[0] < 2:
        raise DataError(f"{label}: {latents.shape[0]} reference latent(s); the SD of a projection needs at least 2")
    projection = latents @ vector  # (N,)
    sd = float(np.std(projection, ddof=1))
    if not sd > 1e-12 * (1.0 + float(np.abs(projection).max())):  # rounding leaves ~1e-16 for equal projections
        raise DataError(f"{label}: every reference latent has the same projection on it (SD 0)")
    return Direction(vector, sd, label)


def index_vector(latent_dim: int, index: int) -> np.ndarray:
    """The basis vector e_index of length ``latent_dim`` (a direction along one latent)."""
    if not 0 <= index < latent_dim:
        raise ConfigError(f"latent index {index} is out of range; expected 0..{latent_dim - 1}")
    e = np.zeros(latent_dim, dtype=np.float64)
    e[index] = 1.0
    return e


def fit_direction(latents: np.ndarray, target: np.ndarray, method: FitMethod, label: str = "phenotype") -> np.ndarray:
    """Coefficients (L,) of a linear model predicting ``target`` (N,) from ``latents`` (N, L).

    ``ridge``: regularised least squares (α = 1) on standardised latents, coefficients mapped back to raw latent
    units so they point along the raw latent space. ``logistic``: a binary target (exactly two values); the
    coefficient vector points towards the larger value. Rows with a missing target are dropped.
    """
    from sklearn.linear_model import LogisticRegression, Ridge

    if method not in FIT_METHODS:
        raise ConfigError(f"fit method {method!r} is unknown; valid: {', '.join(FIT_METHODS)}")
    x = np.asarray(latents, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64).reshape(-1)
    keep = np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.shape[0] < 3:
        raise DataError(f"{label}: {x.shape[0]} subjects with a value; a fit needs at least 3")
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    xs = (x - x.mean(axis=0)) / scale
    if method == "ridge":
        coef = Ridge(alpha=1.0).fit(xs, y).coef_
    else:
        classes = np.unique(y)
        if classes.size != 2:
            raise DataError(f"{label}: a logistic fit needs exactly two values, found {classes.size}")
        coef = LogisticRegression(max_iter=1000).fit(xs, y == classes[1]).coef_[0]
    return np.asarray(coef, dtype=np.float64) / scale


def fractions(steps: int) -> np.ndarray:
    """``steps`` (≥ 2) evenly spaced interpolation fractions from 0 to 1 inclusive."""
    if not isinstance(steps, int) or steps < 2:
        raise ConfigError(f"--steps {steps!r}: an interpolation needs at least 2 steps (its two ends)")
    return np.linspace(0.0, 1.0, steps)


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """(1 − t)·a + t·b, elementwise (a and b of one shape)."""
    return (1.0 - t) * a + t * b


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation per sample: a, b (B, ...) are flattened per row; θ is the angle between rows.

    sin((1−t)θ)/sin θ · a + sin(tθ)/sin θ · b (Shoemake 1985); rows that are (nearly) parallel fall back to lerp.
    """
    if a.shape != b.shape:
        raise ValueError(f"slerp of shapes {tuple(a.shape)} and {tuple(b.shape)}; expected equal shapes")
    fa, fb = a.reshape(a.shape[0], -1).double(), b.reshape(b.shape[0], -1).double()  # (B, N)
    cos = (fa * fb).sum(1) / (fa.norm(dim=1) * fb.norm(dim=1)).clamp_min(1e-12)
    theta = torch.arccos(cos.clamp(-1.0, 1.0))[:, None]  # (B, 1)
    sin = torch.sin(theta)
    parallel = sin.abs() < 1e-6
    safe = torch.where(parallel, torch.ones_like(sin), sin)
    wa = torch.where(parallel, torch.full_like(sin, 1.0 - t), torch.sin((1.0 - t) * theta) / safe)
    wb = torch.where(parallel, torch.full_like(sin, t), torch.sin(t * theta) / safe)
    return (wa * fa + wb * fb).reshape(a.shape).to(a.dtype)


__all__ = [
    "FIT_METHODS",
    "Direction",
    "FitMethod",
    "fit_direction",
    "fractions",
    "index_vector",
    "lerp",
    "make_direction",
    "slerp",
    "unit_vector",
]
