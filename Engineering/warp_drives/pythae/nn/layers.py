"""One layer factory for the pythae drive's 2-D and 3-D networks, plus the input-size checks (DEFECT-33).

Every network in :mod:`Engineering.warp_drives.pythae.nn` asks this module for its convolutions, transposed
convolutions and batch norms, so 2-D versus 3-D is decided in exactly one place (``dims``).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from Engineering.errors import ConfigError

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_BATCH_NORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def check_dims(dims: int) -> int:
    """Return ``dims`` if it is 2 or 3, else raise :class:`ConfigError`."""
    if dims not in _CONV:
        raise ConfigError(f"dims={dims!r} is not supported; the pythae nets take dims 2 or 3")
    return dims


def conv_nd(dims: int, in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0) -> nn.Module:
    """``Conv{dims}d(in_ch → out_ch)`` with isotropic kernel, stride and padding."""
    return _CONV[check_dims(dims)](in_ch, out_ch, kernel, stride=stride, padding=padding)


def conv_transpose_nd(
    dims: int, in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0, output_padding: int = 0
) -> nn.Module:
    """``ConvTranspose{dims}d(in_ch → out_ch)`` with isotropic kernel, stride, padding and output padding."""
    return _CONV_T[check_dims(dims)](
        in_ch, out_ch, kernel, stride=stride, padding=padding, output_padding=output_padding
    )


def batch_norm_nd(dims: int, channels: int) -> nn.Module:
    """``BatchNorm{dims}d(channels)``."""
    return _BATCH_NORM[check_dims(dims)](channels)


def check_spatial_shape(spatial_shape: Sequence[int], dims: int, multiple: int, family: str) -> tuple[int, ...]:
    """Validate that every spatial size is a positive multiple of ``multiple`` and at least 16.

    The ConvNet encoder halves every axis four times (so each axis needs ≥ 16) and its decoder rebuilds
    ``8·(s//8)``; the ResNet pair needs ``s % 16 == 0``. The original crashed or silently returned a smaller
    image (DEFECT-33); here a wrong size is a :class:`ConfigError` that names the nearest valid sizes.

    Args:
        spatial_shape: spatial sizes only, no channel axis, e.g. ``(16, 16)`` or ``(56, 128, 128)``.
        dims: 2 or 3; must equal ``len(spatial_shape)``.
        multiple: 8 (ConvNet) or 16 (ResNet).
        family: network family name, used in the message.

    Returns:
        The shape as a tuple of ints.
    """
    shape = tuple(int(s) for s in spatial_shape)
    if len(shape) != check_dims(dims):
        raise ConfigError(f"input_shape {shape} has {len(shape)} spatial axes but the {dims}-D nets need {dims}")
    for axis, size in enumerate(shape):
        if size < 16 or size % multiple:
            lower = max(16, size - size % multiple)
            near = sorted({lower, lower + multiple if size > lower else lower})
            raise ConfigError(
                f"input_shape {shape}: axis {axis} has size {size}, but the {family} nets need every spatial size "
                f"to be a multiple of {multiple} and at least 16 (valid sizes near it: {', '.join(map(str, near))}); "
                f"crop or pad the data (e.g. --input_shape) to such a size"
            )
    return shape
