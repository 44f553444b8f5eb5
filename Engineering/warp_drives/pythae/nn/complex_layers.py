"""Complex-valued building blocks on plain torch complex tensors (replaces ``torchcomplex``).

Parameters stay real (optimisers, clipping, checkpoints and DDP see ordinary float tensors): a complex linear
map W = A + iB is a pair of real layers applied with the real/imaginary decomposition
``W·z = (A·x − B·y) + i(A·y + B·x)`` for z = x + iy. The pair works for any real linear layer (Linear, Conv,
ConvTranspose), so the 2-D/3-D choice stays in the one layer factory.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

_EPS = 1e-8


class ComplexPair(nn.Module):
    """Complex version of a real linear layer: ``make()`` builds the real part A and the imaginary part B.

    Input and output are complex tensors of the wrapped layer's shapes. Each real layer's bias b_A, b_B gives the
    complex bias (b_A − b_B) + i(b_A + b_B).
    """

    def __init__(self, make: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.re = make()
        self.im = make()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        n = z.shape[0]
        parts = torch.cat([z.real, z.imag], dim=0)  # (2B, ...): one call per real layer
        a, b = self.re(parts), self.im(parts)
        return torch.complex(a[:n] - b[n:], a[n:] + b[:n])


class ComplexBatchNorm(nn.Module):
    """ "Naive" complex batch norm: an independent real batch norm on the real and on the imaginary part."""

    def __init__(self, make: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.re = make()
        self.im = make()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.complex(self.re(z.real), self.im(z.imag))


class ModReLU(nn.Module):
    """modReLU(z) = ReLU(|z| + b)·z/|z| with one learnable bias b (initialised at ``bias``)."""

    def __init__(self, bias: float = -0.1) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.tensor(float(bias)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        mag = z.abs()
        return z * (torch.relu(mag + self.bias) / (mag + _EPS))


class Hirose(nn.Module):
    """Hirose(z) = tanh(|z|)·z/|z|: keeps the phase, squashes the magnitude into (0, 1)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        mag = z.abs()
        return z * (torch.tanh(mag) / (mag + _EPS))


class ModSigmoid(nn.Module):
    """modSigmoid(z) = sigmoid(|z|): a real output in (0.5, 1)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(z.abs())


def interleave(z: torch.Tensor) -> torch.Tensor:
    """(B, N) complex → (B, 2N) real as [re₀, im₀, re₁, im₁, …]."""
    return torch.view_as_real(z).reshape(z.shape[0], -1)
