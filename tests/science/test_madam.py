"""Madam (--optimiserID 3): multiplicative, sign-preserving, bounded updates that minimise a quadratic."""

from __future__ import annotations

import pytest
import torch

from Engineering.engines.base import build_optimiser
from Engineering.errors import ConfigError
from Engineering.science.madam import Madam


def test_a_few_steps_reduce_a_quadratic():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.rand(50) + 0.5)  # in [0.5, 1.5]
    target = torch.rand(50) * 0.5 + 0.75  # same signs, inside p_scale * rms(w)
    optimiser = build_optimiser(3, [w], lr=0.05)
    assert isinstance(optimiser, Madam)
    losses = []
    for _ in range(40):
        optimiser.zero_grad()
        loss = ((w - target) ** 2).sum()
        loss.backward()
        optimiser.step()
        losses.append(float(loss))
    assert losses[-1] < 0.2 * losses[0]
    assert all(b <= a + 1e-6 for a, b in zip(losses[:10], losses[1:11], strict=True))  # monotone at first


def test_updates_are_multiplicative_sign_preserving_and_bounded():
    w = torch.nn.Parameter(torch.tensor([1.0, -1.0, 0.0, 2.0]))
    optimiser = Madam([w], lr=0.5)
    bound = 3.0 * float(w.detach().pow(2).mean().sqrt())
    for _ in range(30):  # push every weight outwards, as far as it goes
        optimiser.zero_grad()
        (-(w * torch.sign(w)).sum()).backward()
        optimiser.step()
    w = w.detach()
    assert w[2] == 0  # zero stays zero: a multiplicative update cannot move it
    assert w[0] > 0 and w[1] < 0 and w[3] > 0
    assert w.abs().max() <= bound + 1e-6 and w[3] == pytest.approx(bound)


def test_first_step_follows_the_formula():
    w = torch.nn.Parameter(torch.tensor([2.0, -1.0]))
    w.grad = torch.tensor([0.5, 0.5])
    Madam([w], lr=0.1).step()
    # v̂ = g², so ĝ = sign(g) = 1: w <- w * exp(-0.1 * sign(w))
    expected = torch.tensor([2.0 * torch.exp(torch.tensor(-0.1)), -1.0 * torch.exp(torch.tensor(0.1))])
    torch.testing.assert_close(w.detach(), expected)


def test_mtadam_is_refused_with_the_reason():
    with pytest.raises(ConfigError, match=r"--optimiserID 4 \(MTAdam\) cannot be used: its step\(\) needs each task"):
        build_optimiser(4, [torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
