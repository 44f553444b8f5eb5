"""The one parser of ``--input_shape`` (used by the configuration checks, the data transforms and every engine)."""

from __future__ import annotations

from collections.abc import Sequence

from Engineering.errors import ConfigError


def parse_shape(text: str | Sequence[int], name: str = "input_shape") -> tuple[int, ...]:
    """``"50,128,128"`` (or a sequence) → ``(50, 128, 128)``; ConfigError naming ``--<name>`` unless positive ints."""
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        shape = tuple(int(str(v).strip()) for v in items if str(v).strip())
    except ValueError:
        raise ConfigError(f"--{name} {text!r} must be comma-separated integers, e.g. 50,128,128") from None
    if not shape or any(v <= 0 for v in shape):
        raise ConfigError(f"--{name} {text!r} must list positive sizes, e.g. 50,128,128")
    return shape
