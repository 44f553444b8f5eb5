"""Spatial transforms on the sample dict: interpolation, centre crop/pad and the horizontal-flip augmentation.

Every transform takes and returns the sample dict of :class:`Engineering.data.h5dataset.H5SeriesDataset`
(``sample["inp"]["data"]`` plus an optional ``sample["inp"]["mask"]``). A mask is moved together with the data,
so it always has the data's shape (the original did not flip or crop the mask).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from Engineering.errors import ConfigError, DataError

Sample = dict[str, Any]


class Interpolate:
    """Linear zoom (``scipy.ndimage.zoom``, order 1) of the whole array by ``factor`` on every axis.

    The leading channel axis, if any, is zoomed as well (faithful). A mask is zoomed with order 0 so it stays binary.
    Input and output: numpy arrays of any rank; the dtype is kept.
    """

    def __init__(self, factor: float) -> None:
        if not factor > 0:
            raise ConfigError(f"interp_fact={factor!r} is invalid; expected a positive number")
        self.factor = float(factor)

    def __call__(self, sample: Sample) -> Sample:
        inp = sample["inp"]
        inp["data"] = ndimage.zoom(inp["data"], self.factor, order=1)
        if "mask" in inp:
            inp["mask"] = ndimage.zoom(inp["mask"], self.factor, order=0)
        return sample


def _crop_or_pad_axis(arr: np.ndarray, axis: int, target: int) -> np.ndarray:
    """Centre crop or zero-pad one axis to ``target`` (0 = keep). Pad: floor(d/2) before, the rest after."""
    n = arr.shape[axis]
    if target == 0 or n == target:
        return arr
    if n > target:
        start = (n - target) // 2
        return np.take(arr, np.arange(start, start + target), axis=axis)
    d = target - n
    widths = [(0, 0)] * arr.ndim
    widths[axis] = (d // 2, d - d // 2)
    return np.pad(arr, widths, mode="constant", constant_values=0)


class CropOrPad:
    """Centre crop / zero pad to ``size`` (spatial shape, e.g. (50, 128, 128) or (128, 128)).

    An array with one axis more than ``size`` has a leading channel axis that is left untouched.
    A target of 0 keeps that axis on every axis (the original cropped a third axis to length 0).
    Input/output: numpy ``(…size)`` or ``(C, …size)``.
    """

    def __init__(self, size: Sequence[int]) -> None:
        size = tuple(int(s) for s in size)
        if not size or any(s < 0 for s in size):
            raise ConfigError(f"input_shape={size!r} is invalid; expected non-negative integers such as 50,128,128")
        self.size = size

    def _apply(self, arr: np.ndarray, key: str) -> np.ndarray:
        offset = arr.ndim - len(self.size)
        if offset not in (0, 1):
            raise DataError(
                f"sample {key!r} has shape {tuple(arr.shape)} but input_shape {self.size} has {len(self.size)} "
                f"entries; expected a sample with {len(self.size)} or {len(self.size) + 1} axes"
            )
        for axis, target in enumerate(self.size):
            arr = _crop_or_pad_axis(arr, axis + offset, target)
        return np.ascontiguousarray(arr)

    def __call__(self, sample: Sample) -> Sample:
        inp = sample["inp"]
        key = str(sample.get("key", "?"))
        inp["data"] = self._apply(inp["data"], key)
        if "mask" in inp:
            inp["mask"] = self._apply(inp["mask"], key)
        return sample


class RandomHorizontalFlip:
    """Flip the last axis (W) of data and mask with probability ``p`` (one draw per sample, torch RNG)."""

    def __init__(self, p: float) -> None:
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"p_aug_horflip={p!r} is invalid; expected a probability in [0, 1]")
        self.p = float(p)

    def __call__(self, sample: Sample) -> Sample:
        if torch.rand(()).item() < self.p:
            inp = sample["inp"]
            inp["data"] = np.ascontiguousarray(np.flip(inp["data"], axis=-1))
            if "mask" in inp:
                inp["mask"] = np.ascontiguousarray(np.flip(inp["mask"], axis=-1))
        return sample


class RandomApply:
    """Apply ``transforms`` in order with probability ``p`` (the outer ``p_augment`` probability)."""

    def __init__(self, transforms: Sequence[Any], p: float) -> None:
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"p_augment={p!r} is invalid; expected a probability in [0, 1]")
        self.transforms = list(transforms)
        self.p = float(p)

    def __call__(self, sample: Sample) -> Sample:
        if torch.rand(()).item() < self.p:
            for t in self.transforms:
                sample = t(sample)
        return sample


def _times(shape: Sequence[int]) -> str:
    return "×".join(str(int(s)) for s in shape)


def describe_fit(
    data_shape: Sequence[int], input_shape: Sequence[int], interp_fact: float = 1.0, croppad: bool = True
) -> tuple[str, float]:
    """What the transforms do between a sample and the network input, as one line, and the share of padding.

    ``data_shape`` is a sample as read (optionally with a leading channel axis, which is left alone);
    ``input_shape`` the network's spatial shape. The zoom (``interp_fact``) is applied first, as in the chain.
    Returns (line, padding share = fraction of network-input voxels that are zero padding).
    """
    target = tuple(int(s) for s in input_shape)
    data = tuple(int(s) for s in data_shape)
    zoomed = tuple(int(round(s * interp_fact)) for s in data) if interp_fact != 1 else data
    spatial = zoomed[len(zoomed) - len(target) :]
    names = ("D", "H", "W")[3 - len(target) :] if len(target) <= 3 else tuple(f"axis{i}" for i in range(len(target)))
    text = f"data {_times(data)}"
    if zoomed != data:
        text += f" zoomed ×{interp_fact:g} to {_times(zoomed)}"
    text += f" → network input {_times(target)}"
    if len(spatial) != len(target):
        return f"{text}: the sample has fewer axes than --input_shape", 0.0
    if not croppad:
        same = spatial == target
        return f"{text}: no crop/pad (--croppad off){'' if same else ', the sizes differ'}", 0.0
    steps = []
    for name, have, want in zip(names, spatial, target, strict=True):
        if have == want:
            steps.append(f"{name} kept")
        elif have > want:
            steps.append(f"{name} crop {have}→{want}")
        else:
            steps.append(f"{name} pad {have}→{want}")
    share = 1.0 - math.prod(min(h, w) for h, w in zip(spatial, target, strict=True)) / math.prod(target)
    return f"{text}: {', '.join(steps)}; {100 * share:.1f}% of the input voxels are added padding", share
