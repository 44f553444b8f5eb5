"""Per-field conversion settings and the series-key rules.

A YAML like the original ``meta.yaml`` is keyed by ``F<fieldID>``; each block holds ``desctags`` (``primary_data``,
``primary_data_tags``, ``auxiliary_data``, ``auxiliary_data_tags``) and the flags ``multi_primary``, ``repeat_acq``,
``default_plane``, ``is_complex``, ``is_3D``, ``is_dynamic``, ``multi_channel``, ``stack_dim``. The ``desctags`` keys
may also sit directly in the block.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from Engineering.errors import ConfigError

PLANES = ("sagittal", "coronal", "transverse")
_DESC_KEYS = ("primary_data", "primary_data_tags", "auxiliary_data", "auxiliary_data_tags")
_NON_WORD = re.compile(r"[^A-Za-z0-9]+")


def _alternatives(entry: Any, where: str) -> list[str]:
    """A description entry is a string or a list of alternative strings."""
    if isinstance(entry, str):
        return [entry]
    if isinstance(entry, Sequence) and entry and all(isinstance(e, str) for e in entry):
        return list(entry)
    raise ConfigError(f"{where}: entry {entry!r} is invalid; expected a series description or a list of them")


@dataclass
class FieldConfig:
    """How series of one field become datasets. Flags set to False force that axis to be a singleton (the
    series is skipped otherwise); True or None allow it. With no descriptions at all, every series is kept as
    ``primary_<description>`` (bring-your-own-data default)."""

    primary_data: list[Any] = field(default_factory=list)
    primary_data_tags: list[str] = field(default_factory=list)
    auxiliary_data: list[Any] = field(default_factory=list)
    auxiliary_data_tags: list[str] = field(default_factory=list)
    multi_primary: bool = False
    repeat_acq: bool = True
    default_plane: str | None = None
    is_complex: bool = False
    is_3D: bool | None = None
    is_dynamic: bool | None = None
    multi_channel: bool | None = None
    stack_dim: int | None = None

    def __post_init__(self) -> None:
        self.primary_data = [_alternatives(e, "primary_data") for e in self.primary_data]
        self.auxiliary_data = [_alternatives(e, "auxiliary_data") for e in self.auxiliary_data]
        if self.multi_primary and len(self.primary_data_tags) != len(self.primary_data):
            raise ConfigError(
                f"multi_primary needs one primary_data_tags entry per primary_data entry; got "
                f"{len(self.primary_data_tags)} tags for {len(self.primary_data)} descriptions"
            )
        if len(self.auxiliary_data_tags) != len(self.auxiliary_data):
            raise ConfigError(
                f"auxiliary_data_tags has {len(self.auxiliary_data_tags)} entries for {len(self.auxiliary_data)} "
                f"auxiliary_data entries; expected one tag per entry"
            )
        if self.default_plane is not None and self.default_plane not in PLANES:
            raise ConfigError(f"default_plane={self.default_plane!r} is invalid; expected one of {', '.join(PLANES)}")
        if self.stack_dim is not None and self.stack_dim not in range(3):
            raise ConfigError(f"stack_dim={self.stack_dim!r} is invalid; expected 0 (Channel), 1 (Time) or 2 (Slice)")

    @property
    def keep_all(self) -> bool:
        """No descriptions configured: keep every series as ``primary_<description>``."""
        return not self.primary_data and not self.auxiliary_data

    def base_key(self, description: str) -> str | None:
        """``primary``, ``primary_<tag>`` or ``auxiliary_<tag>`` for an exact description match, else None."""
        if self.keep_all:
            tag = _NON_WORD.sub("_", description).strip("_")
            return f"primary_{tag}" if tag else "primary"
        for n, alternatives in enumerate(self.primary_data):
            if description in alternatives:
                return f"primary_{self.primary_data_tags[n]}" if self.multi_primary else "primary"
        for n, alternatives in enumerate(self.auxiliary_data):
            if description in alternatives:
                return f"auxiliary_{self.auxiliary_data_tags[n]}"
        return None

    def plane_suffix(self, plane: str | None) -> str:
        """``_<plane>`` unless the plane equals ``default_plane`` (or is unknown)."""
        return "" if plane is None or plane == self.default_plane else f"_{plane}"

    def check_axes(self, shape: Sequence[int]) -> str | None:
        """Why a (C, T, S, X, Y) shape breaks the flags (an axis the config declares absent is not 1), else None."""
        for axis, flag in ((0, "multi_channel"), (1, "is_dynamic"), (2, "is_3D")):
            if getattr(self, flag) is False and shape[axis] != 1:
                return f"axis {axis} has size {shape[axis]} but {flag} is false"
        return None

    @classmethod
    def from_mapping(cls, block: Mapping[str, Any], source: str) -> FieldConfig:
        """Build from a meta.yaml block (``desctags`` nested or flat); unknown keys are a ConfigError."""
        values = dict(block)
        values.update(dict(values.pop("desctags", None) or {}))
        valid = [f.name for f in fields(cls)]
        unknown = sorted(k for k in values if k not in valid)
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
        return cls(**values)


def load_field_config(path: str | os.PathLike[str], field_id: str | None = None) -> FieldConfig:
    """Read ``path``; a file keyed by ``F<field>`` gives that block (the only one when ``field_id`` is None)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"conversion config {path} cannot be read ({type(err).__name__}); expected YAML") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"conversion config {path} holds {type(data).__name__}; expected a mapping")
    blocks = {k: v for k, v in data.items() if re.fullmatch(r"F\d+", str(k))}
    if not blocks:
        return FieldConfig.from_mapping(data, str(path))
    if field_id is None and len(blocks) == 1:
        field_id = next(iter(blocks))[1:]
    key = f"F{field_id}"
    if key not in blocks:
        raise ConfigError(f"conversion config {path} has no block {key}; blocks: {', '.join(sorted(blocks))}")
    return FieldConfig.from_mapping(blocks[key], f"{path} [{key}]")


def plane_from_orientation(cosines: Sequence[float]) -> str:
    """Plane of ImageOrientationPatient: the largest |component| of the row × column normal (ties → lowest)."""
    if len(cosines) != 6:
        raise ValueError(f"ImageOrientationPatient has {len(cosines)} values; expected 6")
    row, col = np.asarray(cosines[:3], float), np.asarray(cosines[3:], float)
    return PLANES[int(np.argmax(np.abs(np.cross(row, col))))]
