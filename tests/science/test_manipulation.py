"""Latent-space math: α in SDs of the projection, fitted directions, lerp/slerp (no network)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from Engineering.errors import ConfigError, DataError
from Engineering.science.manipulation import (
    fit_direction,
    fractions,
    index_vector,
    lerp,
    make_direction,
    slerp,
    unit_vector,
)


def _latents(n: int = 200, dim: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dim)) * np.arange(1, dim + 1)  # axes of different spread


def test_alpha_moves_the_projection_by_alpha_sds_and_nothing_else():
    z = _latents()
    w = np.array([1.0, -2.0, 0.0, 0.5, 0.0, 3.0])
    d = make_direction(w, z, "w")
    unit = w / np.linalg.norm(w)
    assert np.isclose(np.linalg.norm(d.vector), 1.0) and np.allclose(d.vector, unit)
    assert np.isclose(d.sd, np.std(z @ unit, ddof=1))
    alphas = [-2.0, 0.0, 1.5]
    moved = z[0][None, :] + d.offsets(alphas)  # (3, L)
    shift = moved @ unit - z[0] @ unit
    assert np.allclose(shift, np.array(alphas) * d.sd)
    orthogonal = moved - np.outer(moved @ unit, unit)
    assert np.allclose(orthogonal, z[0] - (z[0] @ unit) * unit)  # the rest of the latent stays


def test_index_direction_has_the_sd_of_that_latent():
    z = _latents()
    d = make_direction(index_vector(6, 4), z, "Z4")
    assert np.isclose(d.sd, z[:, 4].std(ddof=1))
    with pytest.raises(ConfigError, match=r"latent index 6 is out of range; expected 0..5"):
        index_vector(6, 6)


@pytest.mark.parametrize(
    ("w", "latents", "message"),
    [
        (np.zeros(3), np.ones((4, 3)), "zero length"),
        (np.ones(3), np.ones((4, 2)), r"latents of shape \(4, 2\) do not match a direction of length 3"),
        (np.ones(3), np.ones((1, 3)), "needs at least 2"),
        (np.ones(3), np.ones((5, 3)), "SD 0"),
    ],
)
def test_bad_directions_are_refused_with_a_reason(w, latents, message):
    with pytest.raises(DataError, match=message):
        make_direction(w, latents, "d")


def test_ridge_finds_a_planted_direction_in_raw_latent_units():
    z = _latents(400)
    planted = np.array([0.0, 1.0, 0.0, 0.0, -0.5, 0.0])
    y = z @ planted + np.random.default_rng(1).normal(scale=0.1, size=len(z))
    y[:5] = np.nan  # missing values are dropped
    coef = fit_direction(z, y, "ridge")
    assert unit_vector(coef) @ unit_vector(planted) > 0.99


def test_logistic_points_towards_the_larger_class():
    z = _latents(400)
    y = (z[:, 2] > 0).astype(float) + 1.0  # classes 1 and 2
    coef = fit_direction(z, y, "logistic")
    assert unit_vector(coef)[2] > 0.9
    with pytest.raises(DataError, match="exactly two values, found 3"):
        fit_direction(z, np.arange(len(z)) % 3, "logistic")
    with pytest.raises(ConfigError, match="'lasso' is unknown; valid: ridge, logistic"):
        fit_direction(z, y, "lasso")  # type: ignore[arg-type]


def test_lerp_and_slerp_hit_their_ends():
    a, b = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    for fn in (lerp, slerp):
        assert torch.allclose(fn(a, b, 0.0), a, atol=1e-6) and torch.allclose(fn(a, b, 1.0), b, atol=1e-6)


def test_slerp_keeps_the_norm_of_orthogonal_rows_and_falls_back_to_lerp_for_parallel_ones():
    a = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    b = torch.tensor([[0.0, 1.0], [4.0, 0.0]])  # row 0 orthogonal, row 1 parallel
    mid = slerp(a, b, 0.5)
    assert torch.isclose(mid[0].norm(), torch.tensor(1.0)) and torch.allclose(mid[0], torch.tensor([0.5**0.5] * 2))
    assert torch.allclose(mid[1], lerp(a[1], b[1], 0.5))
    with pytest.raises(ValueError, match="equal shapes"):
        slerp(a, b[:1], 0.5)


def test_fractions_include_both_ends():
    assert np.allclose(fractions(3), [0.0, 0.5, 1.0])
    with pytest.raises(ConfigError, match="at least 2 steps"):
        fractions(1)
