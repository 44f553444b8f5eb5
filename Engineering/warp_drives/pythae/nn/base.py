"""Shared pieces of the MED encoders/decoders: the depth-indexed forward that pythae's ``output_layer_levels`` needs,
the linear heads (AE / VAE / SVAE) that turn the flattened trunk into pythae's ``ModelOutput`` keys, and the size
checks. The layers themselves come from the one 2D/3D factory, :mod:`Engineering.science.nn_utils`."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from pythae.models.base.base_utils import ModelOutput
from torch import nn

from Engineering.errors import ConfigError

HEAD_KINDS = ("ae", "vae", "svae")
PYTHAE_DIMS = (2, 3)


def check_levels(output_layer_levels: Sequence[int] | None, depth: int) -> int:
    """Validate pythae's ``output_layer_levels`` (1..depth, or -1 for all) and return how deep to run."""
    if output_layer_levels is None or -1 in output_layer_levels:
        return depth
    if not all(0 < level <= depth for level in output_layer_levels):
        raise ValueError(f"output_layer_levels {list(output_layer_levels)} must lie in 1..{depth} (or be -1)")
    return max(output_layer_levels)


def wants_level(output_layer_levels: Sequence[int] | None, level: int) -> bool:
    """True when intermediate output ``level`` (1-based) was requested."""
    return output_layer_levels is not None and (level in output_layer_levels or -1 in output_layer_levels)


def run_layers(
    layers: nn.ModuleList, x: torch.Tensor, output_layer_levels: Sequence[int] | None, prefix: str
) -> tuple[torch.Tensor, ModelOutput, bool]:
    """Run ``layers`` in order, storing ``<prefix>_layer_<i>`` outputs for the requested levels.

    Returns:
        (last activation, partial ModelOutput, whether the full depth was run).
    """
    output = ModelOutput()
    max_depth = check_levels(output_layer_levels, len(layers))
    out = x
    for i in range(max_depth):
        out = layers[i](out)
        if wants_level(output_layer_levels, i + 1):
            output[f"{prefix}_layer_{i + 1}"] = out
    return out, output, max_depth == len(layers)


class LatentHeads(nn.Module):
    """Linear heads from a flattened feature vector ``(B, in_features)`` to the pythae encoder keys.

    * ``ae``: ``embedding`` (B, L)
    * ``vae``: ``embedding`` (B, L) and ``log_covariance`` (B, L)
    * ``svae``: ``embedding`` (B, L) and ``log_concentration`` (B, 1)
    """

    def __init__(self, in_features: int, latent_dim: int, kind: str) -> None:
        super().__init__()
        if kind not in HEAD_KINDS:
            raise ConfigError(f"encoder head kind {kind!r} is not one of {', '.join(HEAD_KINDS)}")
        if latent_dim < 1:
            raise ConfigError(f"latent_dim={latent_dim} must be a positive integer")
        self.kind = kind
        self.embedding = nn.Linear(in_features, latent_dim)
        if kind == "vae":
            self.log_var = nn.Linear(in_features, latent_dim)
        elif kind == "svae":
            self.log_concentration = nn.Linear(in_features, 1)

    def forward(self, flat: torch.Tensor, output: ModelOutput) -> ModelOutput:
        """Add the head outputs for ``flat`` (B, in_features) to ``output`` and return it."""
        output["embedding"] = self.embedding(flat)
        if self.kind == "vae":
            output["log_covariance"] = self.log_var(flat)
        elif self.kind == "svae":
            output["log_concentration"] = self.log_concentration(flat)
        return output


def check_net_sizes(in_channels: int, n_features: int, latent_dim: int) -> None:
    """Raise :class:`ConfigError` unless channels, features and latent size are positive integers."""
    for name, value in (("in_channels", in_channels), ("n_features", n_features), ("latent_dim", latent_dim)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name}={value!r} must be a positive integer")


def prod(values: Sequence[int]) -> int:
    """Product of the sizes (1 for an empty sequence)."""
    return math.prod(values)


def check_spatial_shape(spatial_shape: Sequence[int], dims: int, multiple: int, family: str) -> tuple[int, ...]:
    """Validate that every spatial size is a positive multiple of ``multiple`` and at least 16.

    The ConvNet encoder halves every axis four times (so each axis needs ≥ 16) and its decoder rebuilds
    ``8·(s//8)``; the ResNet pair needs ``s % 16 == 0``. The original crashed or silently returned a smaller
    image; here a wrong size is a :class:`ConfigError` that names the nearest valid sizes.

    Args:
        spatial_shape: spatial sizes only, no channel axis, e.g. ``(16, 16)`` or ``(56, 128, 128)``.
        dims: 2 or 3; must equal ``len(spatial_shape)``.
        multiple: 8 (ConvNet) or 16 (ResNet).
        family: network family name, used in the message.

    Returns:
        The shape as a tuple of ints.
    """
    shape = tuple(int(s) for s in spatial_shape)
    if dims not in PYTHAE_DIMS:
        raise ConfigError(f"dims={dims!r} is not supported; the pythae nets take dims 2 or 3")
    if len(shape) != dims:
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
