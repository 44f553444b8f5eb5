"""Typed dataset options: every ``DS_*`` JSON key / YAML ``data.dataset`` key with its constructor default."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from Engineering.errors import ConfigError

DEFAULT_CHANNEL_DIM = 0
DEFAULT_SLICE_DIM = 2


@dataclass
class DatasetOptions:
    """Options of :class:`Engineering.data.h5dataset.H5SeriesDataset` (defaults = the original constructor's).

    ``channel_dim``/``slice_dim``: raw axis treated as Channel/Slice; 0 (resp. 2), -1 and None all mean the default
    (-1 is *not* the last axis, faithful). ``include_repeatAcq=False`` additionally drops every repeat
    acquisition (name ending ``_<n>``, n ≥ 1) even when every_primary or an explicit list would keep it.
    """

    fetchMinMax: bool = True
    every_primary: bool = True
    selected_primaries: list[str] | None = None
    selected_auxiliaries: list[str] | None = None
    include_repeatAcq: bool = True
    combine_acquisitions: bool = False
    sanity_filters: dict[str, int] | None = None
    multi_channel: bool = True
    split_volume: bool = True
    split_time: bool = True
    channel_dim: int | None = DEFAULT_CHANNEL_DIM
    slice_dim: int | None = DEFAULT_SLICE_DIM
    data_mask_mode: int = 0
    fetch_phenotypes: bool = False
    phenotypes: dict[str, Any] | None = None
    fetch_confounders: bool = False
    confounders: dict[str, Any] | None = None
    squeeze_slice: bool = True

    def __post_init__(self) -> None:
        self.selected_primaries = _prefixed(self.selected_primaries, "primary", "selected_primaries")
        self.selected_auxiliaries = _prefixed(self.selected_auxiliaries, "auxiliary", "selected_auxiliaries")
        for name in ("channel_dim", "slice_dim"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or not -1 <= value <= 4):
                raise ConfigError(f"DS_{name}={value!r} is invalid; expected an axis 0..4, -1 or None")
        if self.data_mask_mode not in (0, 1, 2):
            raise ConfigError(f"DS_data_mask_mode={self.data_mask_mode!r} is invalid; expected 0, 1 or 2")
        if self.combine_acquisitions:
            raise ConfigError("DS_combine_acquisitions=True is not implemented; expected false")
        _check_sanity_filters(self.sanity_filters)
        for flag, table in (("fetch_phenotypes", "phenotypes"), ("fetch_confounders", "confounders")):
            spec = getattr(self, table)
            if getattr(self, flag) and (not isinstance(spec, Mapping) or "path" not in spec or "cols" not in spec):
                raise ConfigError(f"DS_{flag} is true but DS_{table}={spec!r}; expected {{'path': ..., 'cols': ...}}")

    @property
    def permutation(self) -> tuple[int, ...]:
        """Axis order applied to the raw (C, T, S, X, Y) array."""
        perm = [0, 1, 2, 3, 4]
        if self.channel_dim not in (None, -1, DEFAULT_CHANNEL_DIM):
            c = int(self.channel_dim)  # type: ignore[arg-type]
            perm[0], perm[c] = perm[c], perm[0]
        if self.slice_dim not in (None, -1, DEFAULT_SLICE_DIM):
            s = int(self.slice_dim)  # type: ignore[arg-type]
            perm[2], perm[s] = perm[s], perm[2]
        return tuple(perm)

    @classmethod
    def field_names(cls) -> list[str]:
        """Names of every option, in declaration order."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str) -> DatasetOptions:
        """Build from a dict; an unknown key is a ConfigError naming ``source`` and listing the valid options."""
        valid = cls.field_names()
        unknown = sorted(k for k in values if k not in valid)
        if unknown:
            raise ConfigError(f"{source}: unknown dataset option(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
        return cls(**dict(values))


def _prefixed(entries: Any, prefix: str, name: str) -> list[str] | None:
    """Give entries not starting with ``prefix`` the prefix ``<prefix>_``; returns a new list."""
    if entries is None:
        return None
    if isinstance(entries, str) or not all(isinstance(e, str) for e in entries):
        raise ConfigError(f"DS_{name}={entries!r} is invalid; expected a list of series names")
    return [e if e.startswith(prefix) else f"{prefix}_{e}" for e in entries]


def _check_sanity_filters(filters: Any) -> None:
    if filters is None:
        return
    if not isinstance(filters, Mapping):
        raise ConfigError(f"DS_sanity_filters={filters!r} is invalid; expected a dict such as {{'dim1': 50}}")
    for key, value in filters.items():
        if key not in {f"dim{k}" for k in range(5)} or not isinstance(value, int):
            raise ConfigError(f"DS_sanity_filters entry {key!r}: {value!r} is invalid; expected dim0..dim4 → integer")
