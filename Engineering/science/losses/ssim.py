"""SSIM and MS-SSIM for 2-D and 3-D tensors, and their loss forms (1 − similarity).

Same definition as pytorch_msssim (Gaussian window 11, σ 1.5, valid filtering, K = (0.01, 0.03)); axes shorter
than the window are not smoothed. MS-SSIM uses the 5 standard scale weights and needs every spatial side to be
larger than (win − 1)·2⁴ = 160 voxels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_CONV = {2: F.conv2d, 3: F.conv3d}
_POOL = {2: F.avg_pool2d, 3: F.avg_pool3d}


def _gaussian(win_size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    coords = torch.arange(win_size, device=device, dtype=dtype) - win_size // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def _filter(x: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter of (B, C, *spatial), valid padding, skipping axes shorter than the window."""
    dims = x.ndim - 2
    channels = x.shape[1]
    out = x
    for axis in range(dims):
        if out.shape[2 + axis] < win.numel():
            continue
        shape = [1] * dims
        shape[axis] = win.numel()
        kernel = win.reshape(1, 1, *shape).expand(channels, 1, *shape)
        out = _CONV[dims](out, kernel, groups=channels)
    return out


def _ssim_terms(
    x: torch.Tensor, y: torch.Tensor, win: torch.Tensor, data_range: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-(B, C) mean SSIM and contrast-structure terms."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = _filter(x, win), _filter(y, win)
    sxx = _filter(x * x, win) - mu_x**2
    syy = _filter(y * y, win) - mu_y**2
    sxy = _filter(x * y, win) - mu_x * mu_y
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    ssim_map = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs
    return ssim_map.flatten(2).mean(-1), cs.flatten(2).mean(-1)  # (B, C) each


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, win_size: int = 11, sigma: float = 1.5):
    """Mean SSIM of (B, C, *spatial) tensors (2-D or 3-D spatial)."""
    if x.shape != y.shape or x.ndim not in (4, 5):
        raise ValueError(f"ssim needs equal (B, C, [D,] H, W) shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    win = _gaussian(win_size, sigma, x.device, x.dtype)
    return _ssim_terms(x, y, win, data_range)[0].mean()


def ms_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, win_size: int = 11, sigma: float = 1.5):
    """Mean MS-SSIM of (B, C, *spatial) tensors; every spatial side must exceed (win_size − 1)·16."""
    if x.shape != y.shape or x.ndim not in (4, 5):
        raise ValueError(f"ms_ssim needs equal (B, C, [D,] H, W) shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    min_side = (win_size - 1) * 2 ** (len(MSSSIM_WEIGHTS) - 1)
    if min(x.shape[2:]) <= min_side:
        raise ValueError(
            f"ms_ssim needs every spatial side > {min_side} (5 scales, window {win_size}); got {tuple(x.shape[2:])}"
            " (use --lossID 4, SSIM, for smaller inputs)"
        )
    dims = x.ndim - 2
    win = _gaussian(win_size, sigma, x.device, x.dtype)
    weights = torch.tensor(MSSSIM_WEIGHTS, device=x.device, dtype=x.dtype)
    values = []
    for level in range(len(MSSSIM_WEIGHTS)):
        s, cs = _ssim_terms(x, y, win, data_range)
        if level < len(MSSSIM_WEIGHTS) - 1:
            values.append(torch.relu(cs))
            x, y = _POOL[dims](x, kernel_size=2), _POOL[dims](y, kernel_size=2)
    values.append(torch.relu(s))
    stacked = torch.stack(values, dim=0)  # (levels, B, C)
    return torch.prod(stacked ** weights.view(-1, 1, 1), dim=0).mean()


class SSIMLoss(nn.Module):
    """1 − SSIM (a similarity is turned into a loss; the original minimised the similarity)."""

    def __init__(self, data_range: float = 1.0) -> None:
        super().__init__()
        self.data_range = data_range

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 1 - ssim(input, target, self.data_range)


class MSSSIMLoss(SSIMLoss):
    """1 − MS-SSIM."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 1 - ms_ssim(input, target, self.data_range)
