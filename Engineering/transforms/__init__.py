"""Sample transforms and the builder of the train / evaluation chains.

Order: [train only: augmentation] → Interpolate → CropOrPad → (IntensityNorm → ToTensor | ToTensor → ZScoreNorm)
→ Grey2RGB → ComplexModeConverter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from Engineering.configuration.shapes import parse_shape
from Engineering.errors import ConfigError
from Engineering.transforms.intensity import EPS, NORM_TYPES, IntensityNorm, ZScoreNorm, parse_float_tuple
from Engineering.transforms.spatial import CropOrPad, Interpolate, RandomApply, RandomHorizontalFlip
from Engineering.transforms.tensor import ComplexModeConverter, Grey2RGB, ToTensor

Sample = dict[str, Any]

__all__ = [
    "EPS",
    "NORM_TYPES",
    "ComplexModeConverter",
    "Compose",
    "CropOrPad",
    "Grey2RGB",
    "IntensityNorm",
    "Interpolate",
    "RandomApply",
    "RandomHorizontalFlip",
    "ToTensor",
    "TransformOptions",
    "ZScoreNorm",
    "build_transforms",
    "parse_shape",
]


class Compose:
    """Apply sample transforms in order."""

    def __init__(self, transforms: Sequence[Callable[[Sample], Sample]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Sample) -> Sample:
        for t in self.transforms:
            sample = t(sample)
        return sample

    def __repr__(self) -> str:
        return f"Compose({[type(t).__name__ for t in self.transforms]})"


@dataclass(frozen=True)
class TransformOptions:
    """Typed transform settings (the CLI/JSON options of the same names).

    ``p_augment`` is the outer probability of the augmentation block and ``p_aug_horflip`` the flip probability
    inside it, so a training sample is flipped with probability ``p_augment * p_aug_horflip``.
    """

    norm_type: str = "divbymaxvol"
    zscore_mean: str = ""
    zscore_std: str = ""
    zscore_prenorm: str = ""
    interp_fact: float = 1.0
    croppad: bool = True
    input_shape: tuple[int, ...] = (56, 128, 128)
    is3D: bool = True
    grey2RGB: int = -1
    is_complexDS: bool = False
    complex_mode: int = 1
    p_augment: float = 1.0
    p_aug_horflip: float = 0.5

    def __post_init__(self) -> None:
        if self.norm_type not in NORM_TYPES:
            raise ConfigError(f"norm_type {self.norm_type!r} is unknown; expected one of {', '.join(NORM_TYPES)}")
        expected = 3 if self.is3D else 2
        if self.croppad and len(self.input_shape) != expected:
            raise ConfigError(
                f"input_shape={','.join(map(str, self.input_shape))} has {len(self.input_shape)} entries; "
                f"expected {expected} for is3D={int(self.is3D)}"
            )


def _normalisation(opts: TransformOptions) -> list[Callable[[Sample], Sample]]:
    to_tensor = ToTensor(3 if opts.is3D else 2)
    if opts.norm_type != "zscore":
        return [IntensityNorm(opts.norm_type), to_tensor]
    mean = parse_float_tuple(opts.zscore_mean, "zscore_mean")
    std = parse_float_tuple(opts.zscore_std, "zscore_std")
    return [to_tensor, ZScoreNorm(mean, std, opts.zscore_prenorm)]


def build_transforms(opts: TransformOptions) -> tuple[Compose, Compose]:
    """Build (train_transform, eval_transform). The train chain starts with the augmentation block when
    ``p_augment > 0`` and ``p_aug_horflip > 0``; evaluation never augments."""
    base: list[Callable[[Sample], Sample]] = []
    if opts.interp_fact != 1:
        base.append(Interpolate(opts.interp_fact))
    if opts.croppad:
        base.append(CropOrPad(opts.input_shape))
    base += _normalisation(opts)
    if opts.grey2RGB > -1:
        base.append(Grey2RGB(int(opts.grey2RGB)))
    if opts.is_complexDS and opts.complex_mode != 0:
        base.append(ComplexModeConverter(int(opts.complex_mode)))
    augment: list[Callable[[Sample], Sample]] = []
    if opts.p_augment > 0 and opts.p_aug_horflip > 0:
        augment.append(RandomApply([RandomHorizontalFlip(opts.p_aug_horflip)], opts.p_augment))
    return Compose(augment + base), Compose(base)
