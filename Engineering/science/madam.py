"""Madam: the multiplicative Adam-normalised optimiser of Bernstein et al. (2020), ``--optimiserID 3``.

"Learning compositional functions via multiplicative weight updates" (NeurIPS 2020). Each weight moves by a factor,
not by an offset::

    v      <- 0.999 v + 0.001 g²                 (second moment, bias-corrected: v̂ = v / (1 - 0.999^t))
    ĝ      =  clamp(g / sqrt(v̂), ±g_bound)       (0 where v̂ is 0)
    w      <- w · exp(-lr · sign(w) · ĝ)
    w      <- clamp(w, ±p_scale · rms(w at the first step))

so a weight never changes sign and stays within ``p_scale`` times the layer's initial RMS. Defaults are the
original's (lr 0.01, p_scale 3, g_bound 10). As in the paper, weights that start at exactly zero stay zero (the
zero-initialised output layers of the DiffAE are such weights; Madam suits the pythae models better).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

BETA2 = 0.999


class Madam(torch.optim.Optimizer):
    """Multiplicative weight updates with Adam-style gradient normalisation (see module docstring)."""

    def __init__(self, params: Iterable[Any], lr: float = 0.01, p_scale: float = 3.0, g_bound: float = 10.0) -> None:
        if not lr > 0:
            raise ValueError(f"Madam lr must be positive, got {lr!r}")
        if not (p_scale > 0 and g_bound > 0):
            raise ValueError(f"Madam p_scale and g_bound must be positive, got {p_scale!r}, {g_bound!r}")
        super().__init__(params, {"lr": lr, "p_scale": p_scale, "g_bound": g_bound})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["max"] = group["p_scale"] * p.pow(2).mean().sqrt().item()
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                v = state["exp_avg_sq"]
                v.mul_(BETA2).addcmul_(p.grad, p.grad, value=1 - BETA2)
                v_hat = v / (1 - BETA2 ** state["step"])
                g = torch.where(v_hat > 0, p.grad / v_hat.sqrt(), torch.zeros_like(p))
                g.clamp_(-group["g_bound"], group["g_bound"])
                p.mul_(torch.exp(-group["lr"] * g * torch.sign(p)))
                p.clamp_(-state["max"], state["max"])
        return loss
