"""Intensity normalisation: ``IntensityNorm`` (numpy, before ToTensor) and ``ZScoreNorm`` (tensor, after ToTensor).

eps is float32 machine epsilon everywhere (≈1.19e-7). All arithmetic stays in float32 so that the published DiffAE
input (``zscore`` with prenorm ``minmaxvol``, mean = std = 0.5) is reproduced bit-exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from Engineering.errors import ConfigError

Sample = dict[str, Any]

EPS = float(np.finfo(np.float32).eps)
NORM_TYPES = ("zscore", "minmax", "divbymax", "minmaxvol", "divbymaxvol")
PRENORM_NAMES = ("minmax", "divbymax", "minmaxvol", "divbymaxvol")


def _real_view(arr: np.ndarray) -> np.ndarray:
    """The values whose min/max define the statistics: the magnitude for complex data."""
    return np.abs(arr) if np.iscomplexobj(arr) else arr


class IntensityNorm:
    """Min-max or divide-by-max normalisation of ``sample["inp"]["data"]`` (numpy, any shape).

    ``minmax*``: ``(x - vmin) / (vmax - vmin + eps)``; ``divbymax*``: ``x / (vmax + eps)``.
    (vmin, vmax) come from the sample's ``volmin``/``volmax`` when present (fetchMinMax and the HDF5 attributes),
    else from the current sample after crop/pad, padding included (faithful fallback).
    The result is float32 (complex64 for complex data) whatever the attribute types (numpy 2 could
    promote the original's result to float64).
    """

    def __init__(self, norm_type: str) -> None:
        if norm_type not in NORM_TYPES or norm_type == "zscore":
            valid = ", ".join(t for t in NORM_TYPES if t != "zscore")
            raise ConfigError(f"IntensityNorm type {norm_type!r} is unknown; expected one of {valid}")
        self.norm_type = norm_type

    def __call__(self, sample: Sample) -> Sample:
        inp = sample["inp"]
        x = inp["data"]
        out_dtype = np.complex64 if np.iscomplexobj(x) else np.float32
        if "volmax" in inp:
            vmin, vmax = float(inp["volmin"]), float(inp["volmax"])
        else:
            stats = _real_view(x)
            vmin, vmax = float(stats.min()), float(stats.max())
        if "minmax" in self.norm_type:
            x = (x - np.float32(vmin)) / np.float32(vmax - vmin + EPS)
        else:
            x = x / np.float32(vmax + EPS)
        inp["data"] = x.astype(out_dtype, copy=False)
        return sample


def parse_float_tuple(text: str | float | int, name: str) -> tuple[float, ...]:
    """Parse a comma-separated string such as ``"0.5"`` or ``"0.1,0.2"`` into floats; raise ConfigError if empty."""
    if isinstance(text, int | float):
        return (float(text),)
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        raise ConfigError(f"{name} is empty; expected comma-separated numbers such as 0.5 (needed by norm_type zscore)")
    try:
        return tuple(float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is invalid; expected comma-separated numbers such as 0.5") from None


def _parse_prenorm(prenorm: str | float | int | None) -> tuple[str, float]:
    """Return (mode, divisor): mode is "", "number", "minmax" or "divbymax"."""
    if prenorm is None or (isinstance(prenorm, str) and not prenorm.strip()):
        return "", 0.0
    text = str(prenorm).strip()
    try:
        value = float(text)
    except ValueError:
        if text not in PRENORM_NAMES:
            raise ConfigError(
                f"zscore_prenorm {text!r} is unknown; expected empty, a number or one of {', '.join(PRENORM_NAMES)}"
            ) from None
        return ("minmax" if "minmax" in text else "divbymax"), 0.0
    if value == 0:
        raise ConfigError("zscore_prenorm=0 is invalid; expected a non-zero divisor")
    return "number", value


class ZScoreNorm:
    """``(pre(x) - mean) / std`` on the tensor ``sample["inp"]["data"]`` of shape (C, …).

    ``mean``/``std`` hold one value or one per channel (broadcast over the channel axis 0).
    ``prenorm``: "" none; a number → divide by it; ``minmax``/``minmaxvol`` → per-sample min-max over the whole
    sample (all channels, padding included); ``divbymax``/``divbymaxvol`` → ``x / (max + eps)``.
    FAITHFUL: the ``vol`` variants use the sample's own statistics, never the HDF5 ``min_val``/``max_val``.
    """

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], prenorm: str | float | int | None = "") -> None:
        if any(s == 0 for s in std):
            raise ConfigError(f"zscore_std={','.join(map(str, std))} contains 0; expected non-zero values")
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.prenorm_mode, self.prenorm_div = _parse_prenorm(prenorm)

    def _prenorm(self, x: torch.Tensor) -> torch.Tensor:
        if self.prenorm_mode == "number":
            return x / self.prenorm_div
        if not self.prenorm_mode:
            return x
        stats = x.abs() if x.is_complex() else x
        vmax = stats.max()
        if self.prenorm_mode == "minmax":
            vmin = stats.min()
            return (x - vmin) / (vmax - vmin + EPS)
        return x / (vmax + EPS)

    def _per_channel(self, values: tuple[float, ...], x: torch.Tensor, name: str) -> float | torch.Tensor:
        if len(values) == 1:
            return values[0]
        if x.ndim == 0 or x.shape[0] != len(values):
            raise ConfigError(
                f"{name} has {len(values)} values but the sample has shape {tuple(x.shape)}; "
                f"expected one value or one per channel"
            )
        shape = (len(values),) + (1,) * (x.ndim - 1)  # (C, 1, …) broadcasts over the spatial axes
        return torch.tensor(values, dtype=torch.float32).reshape(shape)

    def __call__(self, sample: Sample) -> Sample:
        inp = sample["inp"]
        x = self._prenorm(inp["data"])
        x = x - self._per_channel(self.mean, x, "zscore_mean")
        x = x / self._per_channel(self.std, x, "zscore_std")
        inp["data"] = x
        return sample
