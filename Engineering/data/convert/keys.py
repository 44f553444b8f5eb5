"""Series keys inside one instance group: repeat suffixes and stacking.

Repeats of a description get ``_0``, ``_1``, … in the order series are added (unlike the original, the suffix is
built from the count of that base key, never by replacing ``"_0"`` substrings). A *different* description that maps to
an existing key is concatenated along ``stack_dim`` when one is configured.
"""

from __future__ import annotations

import numpy as np

from Engineering.data.convert.config import FieldConfig
from Engineering.data.convert.writer import Series


class KeyAssigner:
    """Collects the :class:`Series` of one instance group under their final keys."""

    def __init__(self, config: FieldConfig) -> None:
        self.config = config
        self.series: list[Series] = []
        self._by_base: dict[str, list[Series]] = {}

    def add(self, base: str, description: str, data: np.ndarray, uid: str, header: dict[str, str]) -> str | None:
        """Add one series under ``base`` (key without repeat suffix); returns why it was skipped, or None."""
        existing = self._by_base.setdefault(base, [])
        last = existing[-1] if existing else None
        if last is not None and description != last.description and self.config.stack_dim is not None:
            return self._stack(last, description, data, uid, header)
        if last is not None and not self.config.repeat_acq:
            return f"key {base} already holds series {last.series_ids['mag_0']} and repeat_acq is false"
        key = f"{base}_{len(existing)}" if self.config.repeat_acq else base
        series = Series(key, data, description, {"mag_0": uid}, {"mag_0": header})
        existing.append(series)
        self.series.append(series)
        return None

    def _stack(
        self, target: Series, description: str, data: np.ndarray, uid: str, header: dict[str, str]
    ) -> str | None:
        axis = int(self.config.stack_dim)  # type: ignore[arg-type]
        other = [a for a in range(5) if a != axis]
        if [target.data.shape[a] for a in other] != [data.shape[a] for a in other]:
            return (
                f"cannot stack {description!r} {data.shape} onto {target.key} {target.data.shape} "
                f"along stack_dim {axis}; the other axes differ"
            )
        part = f"mag_{len(target.series_ids)}"
        target.data = np.concatenate([target.data, data], axis=axis)
        target.series_ids[part] = uid
        target.headers[part] = header
        return None
