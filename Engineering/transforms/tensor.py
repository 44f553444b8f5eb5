"""Tensor-side transforms: ``ToTensor``, ``Grey2RGB`` and ``ComplexModeConverter`` (channel axis 0)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from Engineering.errors import ConfigError, DataError

Sample = dict[str, Any]

BF16_EPS = 0.0078125
COMPLEX_MODES = (0, 1, 2, 3, 4, 5, 6, -3, -4)


class ToTensor:
    """numpy → torch. An array with exactly ``dim`` axes (2 for 2D models, 3 for 3D) gets a leading channel axis.

    Shapes: ``(H, W)`` → ``(1, H, W)``, ``(D, H, W)`` → ``(1, D, H, W)`` for dim 3; anything else is kept
    (its first axis is read as channels). A mask goes through the same rule and becomes float32.
    """

    def __init__(self, dim: int) -> None:
        if dim not in (2, 3):
            raise ConfigError(f"ToTensor dim={dim!r} is invalid; expected 2 or 3")
        self.dim = dim

    def _convert(self, arr: Any) -> torch.Tensor:
        if isinstance(arr, torch.Tensor):
            return arr
        arr = np.ascontiguousarray(arr)
        if arr.ndim == self.dim:
            arr = arr[np.newaxis]
        return torch.from_numpy(arr)

    def __call__(self, sample: Sample) -> Sample:
        inp = sample["inp"]
        inp["data"] = self._convert(inp["data"])
        if "mask" in inp:
            inp["mask"] = self._convert(inp["mask"]).to(torch.float32)
        return sample


class Grey2RGB:
    """Make 3 channels from a grey tensor ``(C, …)`` → ``(3C, …)``.

    mode 0: ``[0, x, 0]``; 1: ``[x, x, x]``; 2: ``[u, x, u]`` with u uniform in ``[-ε, ε)``, ε = bf16 epsilon.
    """

    def __init__(self, mode: int) -> None:
        if mode not in (0, 1, 2):
            raise ConfigError(f"grey2RGB={mode!r} is invalid; expected -1 (off), 0, 1 or 2")
        self.mode = int(mode)

    def _side(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == 0:
            return torch.zeros_like(x)
        if self.mode == 1:
            return x
        return (torch.rand_like(x) * 2 - 1) * BF16_EPS

    def __call__(self, sample: Sample) -> Sample:
        x = sample["inp"]["data"]
        sample["inp"]["data"] = torch.cat([self._side(x), x, self._side(x)], dim=0)
        return sample


class ComplexModeConverter:
    """Turn complex data ``(C, …)`` into a real representation (or back, for the negative modes).

    1 abs; 2 real; 3 ``[abs, angle]`` (2C channels); 4 ``[real, imag]`` (2C channels); 5 angle; 6 imag;
    -3 ``abs·exp(i·angle)`` from 2C channels; -4 ``real + i·imag`` from 2C channels; 0 identity.
    """

    def __init__(self, mode: int) -> None:
        if mode not in COMPLEX_MODES:
            raise ConfigError(f"complex_mode={mode!r} is invalid; expected one of {', '.join(map(str, COMPLEX_MODES))}")
        self.mode = int(mode)

    def convert(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the conversion to one tensor (channel axis 0)."""
        m = self.mode
        if m == 0:
            return x
        if m < 0:
            if x.shape[0] % 2:
                raise DataError(f"complex_mode {m} needs an even number of channels; got shape {tuple(x.shape)}")
            a, b = x.chunk(2, dim=0)
            return torch.polar(a, b) if m == -3 else torch.complex(a, b)
        ops = {
            1: lambda t: t.abs(),
            2: lambda t: t.real,
            3: lambda t: torch.cat([t.abs(), t.angle()], dim=0),
            4: lambda t: torch.cat([t.real, t.imag], dim=0),
            5: lambda t: t.angle(),
            6: lambda t: t.imag,
        }
        return ops[m](x).contiguous()

    def __call__(self, sample: Sample) -> Sample:
        sample["inp"]["data"] = self.convert(sample["inp"]["data"])
        return sample
