"""Which input shapes the DiffAE network can take, derived from the network that will be built.

Per resampled axis (H and W; depth too when ``keep_depth`` is off):

* the denoiser UNet halves the axis once per level but the last (``len(net_ch_mult) - 1`` times, average pool
  kernel 2) and doubles it back on the way up; every skip concatenation needs the exact size, so the axis must be
  a multiple of ``2^(len(net_ch_mult) - 1)``;
* the semantic encoder halves ``len(net_enc_channel_mult) - 1`` times and floors (its adaptive pool takes any
  final size), so the axis only needs to stay at least 1 at the end: ``size >= 2^(len(net_enc_channel_mult) - 1)``.

Nothing else restricts the size: attention is placed by a nominal counter that starts at ``max(input_shape)``
(all axes, depth included) and halves per level (docs/differences.md D7), so it decides which attention blocks and
state-dict keys exist, never whether a shape fits. For the template (5 UNet levels, 6 encoder levels) the rule is
"a multiple of 16, at least 32", as the original's documentation states; 80, 96, 112, 144 and 160 are all valid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from Engineering.errors import ConfigError


@dataclass(frozen=True)
class AxisRule:
    """Sizes a resampled axis may have: multiples of ``multiple`` that are at least ``minimum``.

    ``minimum`` is a power of two at least ``multiple``, hence itself a multiple of it.
    """

    multiple: int
    minimum: int

    def accepts(self, size: int) -> bool:
        return size >= self.minimum and size % self.multiple == 0

    def below(self, size: int) -> int | None:
        """The largest valid size <= ``size`` (None if there is none)."""
        candidate = size - size % self.multiple
        return candidate if candidate >= self.minimum else None

    def above(self, size: int) -> int:
        """The smallest valid size >= ``size``."""
        return -(-max(size, self.minimum) // self.multiple) * self.multiple


def axis_rule(net_ch_mult: Sequence[int], net_enc_channel_mult: Sequence[int]) -> AxisRule:
    """The rule for one resampled axis of a UNet with ``net_ch_mult`` levels and an encoder with the other."""
    unet = 2 ** (len(net_ch_mult) - 1)
    encoder = 2 ** (len(net_enc_channel_mult) - 1)
    return AxisRule(multiple=unet, minimum=max(unet, encoder))


def resampled_axes(ndim: int, is3D: bool, keep_depth: bool) -> tuple[int, ...]:
    """Indices of the axes that the network resamples (depth is kept in 3D by default, docs/differences.md D8)."""
    return tuple(range(1 if (is3D and keep_depth) else 0, ndim))


def attention_levels(img_size: int, n_levels: int, attention_resolutions: Sequence[int]) -> list[int]:
    """UNet levels that get attention blocks: the nominal counter starts at ``img_size`` and halves per level."""
    levels, resolution = [], img_size
    for level in range(n_levels):
        if resolution in attention_resolutions:
            levels.append(level)
        resolution //= 2
    return levels


def check_input_shape(
    shape: Sequence[int],
    is3D: bool,
    keep_depth: bool,
    net_ch_mult: Sequence[int],
    net_enc_channel_mult: Sequence[int],
) -> None:
    """Raise one-line :class:`ConfigError` naming the nearest valid shapes when the network cannot take ``shape``."""
    shape = tuple(int(s) for s in shape)
    if not net_ch_mult or not net_enc_channel_mult:
        raise ConfigError("model.DiffAE.net_ch_mult and net_enc_channel_mult need at least one level each")
    rule = axis_rule(net_ch_mult, net_enc_channel_mult)
    axes = resampled_axes(len(shape), is3D, keep_depth)
    bad = [a for a in axes if not rule.accepts(shape[a])]
    if not bad:
        return
    lower = list(shape)
    upper = list(shape)
    for a in bad:
        below = rule.below(shape[a])
        lower[a] = below if below is not None else -1
        upper[a] = rule.above(shape[a])
    around = [s for s in (lower, upper) if min(s) > 0]
    text = " or ".join(",".join(map(str, s)) for s in around)
    names = ", ".join(f"axis {a} ({shape[a]})" for a in bad)
    raise ConfigError(
        f"--input_shape {','.join(map(str, shape))}: the DiffAE network cannot take {names}; each resampled axis "
        f"must be a multiple of {rule.multiple} (the UNet halves it {len(net_ch_mult) - 1} times) and at least "
        f"{rule.minimum} (the semantic encoder halves it {len(net_enc_channel_mult) - 1} times); nearest valid "
        f"shape{'s' if len(around) > 1 else ''}: {text}"
    )
