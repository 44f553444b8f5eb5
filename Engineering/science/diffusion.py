"""Gaussian diffusion and deterministic DDIM in paper notation, network-free.

Notation (Ho et al. 2020; Song et al. 2021): ``betas`` β_t, ``alphas_cumprod`` ᾱ_t, ``x_start`` x_0,
``x_t`` the noised sample, ε the noise. All schedule arithmetic is float64 numpy; each coefficient is
gathered at t and cast to float32 before it multiplies data (:func:`_extract`), as the original does.

The model is any callable ``model(x_t, t, cond=..., x_start=...) -> ε̂`` with the shape of ``x_t``; it is
always called with the ORIGINAL integer timesteps 0..T-1 (no rescaling), also in a respaced process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple, overload

import numpy as np
import torch

from Engineering.errors import ConfigError

Model = Callable[..., torch.Tensor]


def linear_beta_schedule(T: int) -> np.ndarray:
    """β = linspace(1e-4 · 1000/T, 0.02 · 1000/T, T) in float64."""
    scale = 1000 / T
    return np.linspace(scale * 1e-4, scale * 0.02, T, dtype=np.float64)


def space_timesteps(T: int, K: int) -> list[int]:
    """The "ddimK" grid: {0, s, 2s, ...} < T for the smallest integer stride s ≥ 1 giving exactly K steps.

    Examples: K = 20 -> [0, 50, ..., 950]; K = 5 -> [0, 200, 400, 600, 800].

    Raises:
        ConfigError: if K is not in 1..T or no integer stride gives exactly K steps (naming K; docs/differences.md D21).
    """
    if not isinstance(K, int) or isinstance(K, bool) or not 1 <= K <= T:
        raise ConfigError(f"number of DDIM steps must be an integer in 1..{T}, got {K!r}")
    for stride in range(1, T + 1):
        grid = list(range(0, T, stride))
        if len(grid) == K:
            return grid
    raise ConfigError(f"cannot make exactly {K} DDIM steps out of T = {T} with an integer stride")


def _extract(arr: np.ndarray, t: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Gather ``arr[t]`` (float64 -> float32) and broadcast it to ``shape``.

    Args:
        arr: (T,) float64 coefficient table.
        t: (B,) int64 indices into ``arr``.
        shape: target shape (B, ...).

    Returns:
        float32 tensor of ``shape`` with ``out[b, ...] = arr[t[b]]``.
    """
    res = torch.from_numpy(arr).to(device=t.device)[t].float()
    return res.view(-1, *([1] * (len(shape) - 1))).expand(*shape)  # (B, 1, ..., 1) -> shape


def _mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over all non-batch axes: (B, ...) -> (B,)."""
    return x.mean(dim=list(range(1, x.ndim)))


class DDIMTrajectory(NamedTuple):
    """Result of a DDIM loop with ``return_trajectory=True``.

    sample: final x; xs: (K, B, ...) x after each step; pred_xstarts: (K, B, ...) clipped x̂0 at each step.
    """

    sample: torch.Tensor
    xs: torch.Tensor
    pred_xstarts: torch.Tensor


class GaussianDiffusion:
    """ε-prediction Gaussian diffusion with MSE loss and η = 0 DDIM sampling/inversion.

    Args:
        betas: (T,) float64 β schedule of this process.
        timestep_map: for a respaced process, original timestep of each index (default: identity).
    """

    def __init__(self, betas: np.ndarray, timestep_map: Sequence[int] | np.ndarray | None = None) -> None:
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or betas.size == 0 or not ((betas > 0) & (betas <= 1)).all():
            raise ConfigError(f"betas must be a non-empty 1-D array in (0, 1], got shape {betas.shape}")
        self.betas = betas
        self.num_timesteps = int(betas.shape[0])
        self.timestep_map = np.arange(self.num_timesteps) if timestep_map is None else np.asarray(timestep_map)
        if self.timestep_map.shape != (self.num_timesteps,):
            raise ConfigError(f"timestep_map needs {self.num_timesteps} entries, got {len(self.timestep_map)}")

        alphas = 1.0 - betas
        self.alphas_cumprod = np.cumprod(alphas)  # ᾱ_t
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])  # ᾱ_{t-1}, ᾱ_{-1} = 1
        self.alphas_cumprod_next = np.append(self.alphas_cumprod[1:], 0.0)  # ᾱ_{t+1}, ᾱ_T = 0
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1)
        self._spaced: dict[int, GaussianDiffusion] = {}

    @classmethod
    def linear(cls, T: int = 1000) -> GaussianDiffusion:
        """The full T-step process with the linear schedule."""
        if T < 1:
            raise ConfigError(f"T must be >= 1, got {T!r}")
        return cls(linear_beta_schedule(T))

    @classmethod
    def from_config(cls, conf: Any) -> GaussianDiffusion:
        """The full process of a resolved DiffAE config (uses ``conf.T`` and ``conf.beta_scheduler``)."""
        if getattr(conf, "beta_scheduler", "linear") != "linear":
            raise ConfigError(f"beta_scheduler {conf.beta_scheduler!r} is not supported; valid: 'linear'")
        return cls.linear(int(conf.T))

    def respace(self, K: int) -> GaussianDiffusion:
        """The K-step process on the ddimK grid: ᾱ'_i = ᾱ_{τ_i}, β'_i = 1 − ᾱ_{τ_i}/ᾱ_{τ_{i−1}}."""
        if K not in self._spaced:
            tau = space_timesteps(self.num_timesteps, K)
            abar = self.alphas_cumprod[tau]
            new_betas = 1.0 - abar / np.append(1.0, abar[:-1])
            self._spaced[K] = GaussianDiffusion(new_betas, timestep_map=self.timestep_map[tau])
        return self._spaced[K]

    def _model_t(self, t: torch.Tensor) -> torch.Tensor:
        """Map process indices (B,) to the original timesteps given to the network."""
        return torch.as_tensor(self.timestep_map, device=t.device, dtype=t.dtype)[t]

    # ---- forward process and training -------------------------------------------------------------
    def q_sample(self, x_start: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · ε  (Ho et al. eq. 4). x_start, noise: (B, ...); t: (B,)."""
        noise = torch.randn_like(x_start) if noise is None else noise
        return (
            _extract(self.sqrt_alphas_cumprod, t, x_start.shape) * x_start
            + _extract(self.sqrt_one_minus_alphas_cumprod, t, x_start.shape) * noise
        )

    def predict_xstart_from_eps(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x̂0 = √(1/ᾱ_t) · x_t − √(1/ᾱ_t − 1) · ε̂."""
        return (
            _extract(self.sqrt_recip_alphas_cumprod, t, x_t.shape) * x_t
            - _extract(self.sqrt_recipm1_alphas_cumprod, t, x_t.shape) * eps
        )

    def predict_eps_from_xstart(self, x_t: torch.Tensor, t: torch.Tensor, pred_xstart: torch.Tensor) -> torch.Tensor:
        """ε̃ = (√(1/ᾱ_t) · x_t − x̂0) / √(1/ᾱ_t − 1)."""
        return (_extract(self.sqrt_recip_alphas_cumprod, t, x_t.shape) * x_t - pred_xstart) / _extract(
            self.sqrt_recipm1_alphas_cumprod, t, x_t.shape
        )

    def training_losses(
        self,
        model: Model,
        x_start: torch.Tensor,
        t: torch.Tensor,
        noise: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Simple ε-MSE loss.

        The model sees detached x_t and x_start (it encodes x_start itself unless ``cond`` is given).

        Returns:
            ``loss`` (B,) per-sample mean of (ε − ε̂)²; ``model_output`` ε̂ (B, ...); ``pred_xstart`` the
            unclipped x̂0 from the detached ε̂ (B, ...); ``x_t`` (B, ...).
        """
        noise = torch.randn_like(x_start) if noise is None else noise
        x_t = self.q_sample(x_start, t, noise)
        model_output = model(x_t.detach(), self._model_t(t), cond=cond, x_start=x_start.detach())
        if model_output.shape != x_start.shape:
            raise ValueError(f"model output shape {tuple(model_output.shape)} != input shape {tuple(x_start.shape)}")
        return {
            "loss": _mean_flat((noise - model_output) ** 2),
            "model_output": model_output,
            "pred_xstart": self.predict_xstart_from_eps(x_t, t, model_output.detach()),
            "x_t": x_t,
        }

    # ---- DDIM (η = 0, clip_denoised) --------------------------------------------------------------
    def _ddim_pred(
        self, model: Model, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Clipped x̂0 and the ε̃ re-derived from it at process index t."""
        eps_hat = model(x, self._model_t(t), cond=cond)
        pred_xstart = self.predict_xstart_from_eps(x, t, eps_hat).clamp(-1, 1)
        return pred_xstart, self.predict_eps_from_xstart(x, t, pred_xstart)

    def ddim_step(
        self, model: Model, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One DDIM decoding step x_t -> x_{t-1} (Song et al. eq. 12, σ = 0). Returns (x_{t−1}, x̂0)."""
        pred_xstart, eps = self._ddim_pred(model, x, t, cond)
        abar_prev = _extract(self.alphas_cumprod_prev, t, x.shape)
        return pred_xstart * torch.sqrt(abar_prev) + torch.sqrt(1 - abar_prev) * eps, pred_xstart

    def ddim_reverse_step(
        self, model: Model, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One DDIM inversion step x_t -> x_{t+1} (eq. 12 run backwards, σ = 0). Returns (x_{t+1}, x̂0)."""
        pred_xstart, eps = self._ddim_pred(model, x, t, cond)
        abar_next = _extract(self.alphas_cumprod_next, t, x.shape)
        return pred_xstart * torch.sqrt(abar_next) + torch.sqrt(1 - abar_next) * eps, pred_xstart

    @overload
    def ddim_sample_loop(
        self,
        model: Model,
        noise: torch.Tensor,
        cond: torch.Tensor | None,
        steps: int,
        return_trajectory: Literal[False] = ...,
    ) -> torch.Tensor: ...

    @overload
    def ddim_sample_loop(
        self,
        model: Model,
        noise: torch.Tensor,
        cond: torch.Tensor | None,
        steps: int,
        return_trajectory: Literal[True],
    ) -> DDIMTrajectory: ...

    @overload
    def ddim_sample_loop(
        self,
        model: Model,
        noise: torch.Tensor,
        cond: torch.Tensor | None,
        steps: int,
        return_trajectory: bool = ...,
    ) -> torch.Tensor | DDIMTrajectory: ...

    def ddim_sample_loop(
        self,
        model: Model,
        noise: torch.Tensor,
        cond: torch.Tensor | None,
        steps: int,
        return_trajectory: bool = False,
    ) -> torch.Tensor | DDIMTrajectory:
        """Decode x_T -> x_0 over the ``steps``-step grid (i = K−1 … 0).

        ``cond`` (B, E) is passed to every call; None makes the model encode nothing (the engine should
        pass z_sem once instead of re-encoding per step; docs/differences.md D19).
        Returns x_0 (B, ...) or a :class:`DDIMTrajectory`.
        """
        process = self.respace(steps)
        return process._loop(process.ddim_step, model, noise, cond, reversed(range(steps)), return_trajectory)

    @overload
    def ddim_reverse_sample_loop(
        self,
        model: Model,
        x: torch.Tensor,
        cond: torch.Tensor | None,
        steps: int,
        return_trajectory: Literal[False] = ...,
    ) -> torch.Tensor: ...

    @overload
    def ddim_reverse_sample_loop(
        self,
        model: Model,
        x: torch.Tensor,
        cond: torch.Tensor | None,
        steps: int,
        return_trajectory: Literal[True],
    ) -> DDIMTrajectory: ...

    @overload
    def ddim_reverse_sample_loop(
        self,
        model: Model,
        x: torch.Tensor,
        cond: torch.Tensor | None,
        steps: int,
        return_trajectory: bool = ...,
    ) -> torch.Tensor | DDIMTrajectory: ...

    def ddim_reverse_sample_loop(
        self,
        model: Model,
        x: torch.Tensor,
        cond: torch.Tensor | None,
        steps: int,
        return_trajectory: bool = False,
    ) -> torch.Tensor | DDIMTrajectory:
        """Invert x_0 -> x_T over the ``steps``-step grid (i = 0 … K−1).

        Because ᾱ'_next = 0 at the last step, the result is the ε̃ re-derived at the last grid timestep.
        Returns x_T (B, ...) or a :class:`DDIMTrajectory`.
        """
        process = self.respace(steps)
        return process._loop(process.ddim_reverse_step, model, x, cond, range(steps), return_trajectory)

    @staticmethod
    def _loop(step, model, x, cond, indices, return_trajectory) -> torch.Tensor | DDIMTrajectory:
        xs, pred_xstarts = [], []
        for i in indices:
            t = torch.full((x.shape[0],), i, device=x.device, dtype=torch.long)
            x, pred_xstart = step(model, x, t, cond)
            if return_trajectory:
                xs.append(x)
                pred_xstarts.append(pred_xstart)
        if return_trajectory:
            return DDIMTrajectory(x, torch.stack(xs), torch.stack(pred_xstarts))
        return x
