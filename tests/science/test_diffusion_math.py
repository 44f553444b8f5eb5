"""Diffusion math against closed forms, without a network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from Engineering.errors import ConfigError
from Engineering.science.diffusion import GaussianDiffusion, _extract, linear_beta_schedule, space_timesteps


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-6, rtol: float = 0.0) -> None:
    """Elementwise |a - e| <= atol + rtol |e| (cheaper than torch.testing on first use)."""
    assert actual.shape == expected.shape
    err = (actual - expected).abs()
    assert bool((err <= atol + rtol * expected.abs()).all()), f"max-abs error {err.max().item():.3g}"


SHAPES = [(3, 1, 4, 4), (2, 2, 3, 4, 4)]  # 2D and 3D batches


@pytest.fixture(scope="module")
def diffusion() -> GaussianDiffusion:
    return GaussianDiffusion.linear(1000)


def test_schedule_reference_values(diffusion):
    abar = diffusion.alphas_cumprod
    assert diffusion.betas.dtype == np.float64
    np.testing.assert_allclose(abar[[0, 50, 950, 999]], [0.9999, 0.969951, 1.06042e-4, 4.03583e-5], rtol=1e-5)
    assert diffusion.alphas_cumprod_prev[0] == 1.0 and diffusion.alphas_cumprod_next[-1] == 0.0
    np.testing.assert_allclose(linear_beta_schedule(1000)[[0, -1]], [1e-4, 0.02])


@pytest.mark.parametrize(
    "K, expected",
    [(5, [0, 200, 400, 600, 800]), (20, list(range(0, 1000, 50))), (200, list(range(0, 1000, 5))), (1000, None)],
)
def test_space_timesteps(K, expected):
    assert space_timesteps(1000, K) == (expected if expected is not None else list(range(1000)))


@pytest.mark.parametrize("K", [999, 0, 1001])
def test_space_timesteps_error_names_k(K):
    with pytest.raises(ConfigError, match=str(K)):
        space_timesteps(1000, K)


def test_respaced_process(diffusion):
    spaced = diffusion.respace(5)
    np.testing.assert_allclose(spaced.alphas_cumprod, [0.9999, 0.656347, 0.193572, 0.0255675, 0.00150752], rtol=1e-5)
    np.testing.assert_allclose(spaced.alphas_cumprod, diffusion.alphas_cumprod[[0, 200, 400, 600, 800]], rtol=1e-12)
    assert spaced.timestep_map.tolist() == [0, 200, 400, 600, 800]
    assert diffusion.respace(5) is spaced


@pytest.mark.parametrize("shape", SHAPES)
def test_extract_broadcasts_float32(shape):
    arr = np.arange(10, dtype=np.float64) / 3
    t = torch.arange(shape[0])
    out = _extract(arr, t, shape)
    assert out.shape == shape and out.dtype == torch.float32
    for b in range(shape[0]):
        assert torch.all(out[b] == torch.tensor(arr[b], dtype=torch.float32))


@pytest.mark.parametrize("shape", SHAPES)
def test_q_sample_closed_form(diffusion, shape):
    x0, noise = torch.randn(shape), torch.randn(shape)
    t = torch.randint(0, 1000, (shape[0],))
    abar = diffusion.alphas_cumprod[t.numpy()].reshape(-1, *[1] * (len(shape) - 1))
    expected = np.sqrt(abar) * x0.double().numpy() + np.sqrt(1 - abar) * noise.double().numpy()
    np.testing.assert_allclose(diffusion.q_sample(x0, t, noise).numpy(), expected, atol=1e-6)


def test_q_sample_moments(diffusion):
    torch.manual_seed(0)
    x0 = torch.full((20000, 1), 0.5)
    t = torch.full((20000,), 300)
    x_t = diffusion.q_sample(x0, t)
    abar = diffusion.alphas_cumprod[300]
    assert abs(x_t.mean().item() - np.sqrt(abar) * 0.5) < 0.02
    assert abs(x_t.std().item() - np.sqrt(1 - abar)) < 0.02


def test_training_losses_oracle_model(diffusion):
    x0, noise = torch.rand(2, 1, 4, 4) * 2 - 1, torch.randn(2, 1, 4, 4)
    t = torch.tensor([10, 500])
    seen = {}

    def oracle(x_t, t_model, cond=None, x_start=None):
        seen["t"], seen["x_start"] = t_model, x_start
        return noise.clone()

    out = diffusion.training_losses(oracle, x0, t, noise=noise)
    assert out["loss"].shape == (2,) and torch.all(out["loss"] == 0)
    assert_close(out["pred_xstart"], x0, atol=1e-5, rtol=0)
    assert torch.equal(seen["t"], t) and torch.equal(seen["x_start"], x0)
    bad = diffusion.training_losses(lambda *a, **k: torch.zeros_like(noise), x0, t, noise=noise)
    assert_close(bad["loss"], (noise**2).mean(dim=(1, 2, 3)))


def _point_mass_model(diffusion: GaussianDiffusion, x_star: torch.Tensor, calls: list):
    """Exact ε for data concentrated at x_star: ε = (x_t − √ᾱ_t x*) / √(1 − ᾱ_t), at ORIGINAL timesteps."""

    def model(x, t, cond=None, x_start=None):
        calls.append(t[0].item())
        abar = torch.from_numpy(diffusion.alphas_cumprod).float()[t].view(-1, *[1] * (x.ndim - 1))
        return (x - abar.sqrt() * x_star) / (1 - abar).sqrt()

    return model


@pytest.mark.parametrize("shape", SHAPES)
def test_ddim_inversion_then_decoding_recovers_point_mass(diffusion, shape):
    x_star = torch.rand(shape) * 1.6 - 0.8
    calls: list[int] = []
    model = _point_mass_model(diffusion, x_star, calls)
    inv = diffusion.ddim_reverse_sample_loop(model, x_star, None, 5, return_trajectory=True)
    assert calls == [0, 200, 400, 600, 800]
    assert inv.xs.shape == (5, *shape) and torch.equal(inv.xs[-1], inv.sample)
    assert_close(inv.pred_xstarts, x_star.expand(5, *shape), atol=1e-4, rtol=0)
    calls.clear()
    x0 = diffusion.ddim_sample_loop(model, inv.sample, None, 5)
    assert calls == [800, 600, 400, 200, 0]
    assert_close(x0, x_star, atol=1e-4, rtol=0)


def test_ddim_zero_eps_model_telescopes(diffusion):
    """ε̂ = 0 and no clipping: each step scales x by √(ᾱ'_prev/ᾱ'), so x_0 = x_T / √ᾱ'_{K−1}."""
    x_T = torch.rand(2, 1, 4, 4) * 0.008 - 0.004
    zero = lambda x, t, cond=None, x_start=None: torch.zeros_like(x)  # noqa: E731
    x0 = diffusion.ddim_sample_loop(zero, x_T, None, 20)
    expected = x_T.double() / np.sqrt(diffusion.alphas_cumprod[950])
    assert_close(x0.double(), expected, atol=1e-5, rtol=1e-4)


def test_ddim_clips_pred_xstart(diffusion):
    big = lambda x, t, cond=None, x_start=None: torch.full_like(x, -50.0)  # noqa: E731
    traj = diffusion.ddim_sample_loop(big, torch.zeros(1, 1, 2, 2), None, 5, return_trajectory=True)
    assert traj.pred_xstarts.abs().max() <= 1.0
    assert torch.all(traj.sample == 1.0)


def test_inversion_last_step_is_rederived_eps(diffusion):
    """ᾱ'_next = 0 at the last grid step, so x_T equals ε̃ = (√(1/ᾱ)x − x̂0)/√(1/ᾱ − 1) at τ = 800."""
    model = lambda x, t, cond=None, x_start=None: 0.3 * x  # noqa: E731
    traj = diffusion.ddim_reverse_sample_loop(model, torch.rand(1, 1, 3, 3) - 0.5, None, 5, return_trajectory=True)
    spaced = diffusion.respace(5)
    t = torch.tensor([4])
    eps = spaced.predict_eps_from_xstart(traj.xs[-2], t, traj.pred_xstarts[-1])
    assert_close(traj.sample, eps)


def test_bad_betas_raise():
    with pytest.raises(ConfigError, match="betas"):
        GaussianDiffusion(np.array([0.1, 1.5]))
