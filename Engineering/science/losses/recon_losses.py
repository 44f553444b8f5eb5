"""Per-sample reconstruction losses usable as pythae ``custom``/``custom_masked`` losses."""

from __future__ import annotations

import torch
from torch import nn

from Engineering.errors import ConfigError

#: ``loss_fn`` spellings -> elementwise error
_ERRORS = {"mse": "squared", "mae": "absolute", "l1": "absolute"}
MASK_MODES = ("0", "1")


def _check_loss_fn(loss_fn: str, owner: str) -> str:
    if loss_fn not in _ERRORS:
        raise ConfigError(f"{owner}: loss_fn={loss_fn!r} is not supported; valid values: {', '.join(_ERRORS)}")
    return _ERRORS[loss_fn]


def _elementwise(kind: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    diff = a - b
    return diff.pow(2) if kind == "squared" else diff.abs()


def _per_sample_sum(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).sum(dim=-1)  # (B,)


class MaskedReconLoss(nn.Module):
    """Masked summed error, ``forward(input, target, mask) -> (B,)``.

    ``mode`` "0": Σ error of (input·mask, target·mask); "1": that plus the unmasked Σ error (voxels inside the mask
    count twice, as in the original). ``loss_fn``: ``mse`` (squared) or ``mae``/``l1`` (absolute).
    """

    def __init__(self, loss_fn: str = "mse", mode: int | str = 0) -> None:
        super().__init__()
        self.kind = _check_loss_fn(loss_fn, "MaskedReconLoss")
        self.mode = str(mode)
        if self.mode not in MASK_MODES:
            raise ConfigError(f"MaskedReconLoss: mode={mode!r} is not supported; valid values: {', '.join(MASK_MODES)}")

    def forward(self, input: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if mask.shape != target.shape:
            mask = mask.expand_as(target)
        loss = _per_sample_sum(_elementwise(self.kind, input * mask, target * mask))
        if self.mode == "1":
            loss = loss + _per_sample_sum(_elementwise(self.kind, input, target))
        return loss


class ChannelVarWeightedLoss(nn.Module):
    """Error weighted by 1 + the channel variance of the target, summed per sample: ``forward(input, target) -> (B,)``.

    Unlike the original, the population variance (``unbiased=False``) keeps single-channel data finite (weights = 1).
    """

    def __init__(self, loss_fn: str = "mse") -> None:
        super().__init__()
        self.kind = _check_loss_fn(loss_fn, "ChannelVarWeightedLoss")

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weights = 1 + target.var(dim=1, unbiased=False, keepdim=True)  # (B, 1, *spatial)
        return _per_sample_sum(weights * _elementwise(self.kind, input, target))
