"""``manipulate.py``: move subjects along a latent direction, or interpolate between two, and write what it shows.

Everything the user gave is checked first (run, subjects, direction, frames); only then is anything decoded. The
files of one call are written into a hidden staging folder inside the output folder and moved into place at the
end, so a failed call leaves no new file behind.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from Engineering.engines.diffae_inference import (
    DiffAERun,
    SubjectSeries,
    interpolate,
    load_diffae_run,
    load_run_weights,
    load_subject,
    manipulate,
)
from Engineering.engines.directions import DirectionSpec, reference_latents, resolve_direction
from Engineering.errors import ConfigError
from Engineering.outputs.latent_figures import (
    grid_figure,
    pick_frames,
    save_figure,
    staged_folder,
    write_gif,
    write_tensors,
)
from Engineering.science.manipulation import Direction, fractions

log = logging.getLogger("imlatent")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class ManipulationRequest:
    """What ``manipulate.py`` was asked for (see its ``--help``)."""

    run_dir: Path
    subjects: list[str] = field(default_factory=list)
    direction: DirectionSpec | None = None
    alphas: list[float] = field(default_factory=lambda: [-2.0, -1.0, 0.0, 1.0, 2.0])
    between: tuple[str, str] | None = None
    steps: int = 5
    ddim_steps: int | None = None
    frames: list[int] | None = None
    series: str | None = None
    emb: Path | None = None
    out: Path | None = None
    load_best: bool = False
    device: str = "cpu"
    progress: bool = True

    def check(self) -> None:
        """Option combinations that cannot work, refused before the run is loaded."""
        if not self.subjects and self.between is None:
            raise ConfigError("nothing to do: give --subjects with --direction, and/or --between A B")
        if self.subjects and self.direction is None:
            raise ConfigError("--subjects needs --direction (the direction to move them along)")
        if self.direction is not None and not self.subjects:
            raise ConfigError("--direction needs --subjects (whom to move along it)")
        if self.subjects and not self.alphas:
            raise ConfigError("--alphas needs at least one value")
        if self.between is not None:
            fractions(self.steps)


def _stem(*parts: str) -> str:
    return "_".join(_UNSAFE.sub("_", p).strip("_") or "x" for p in parts)


def _display(series: SubjectSeries, images: torch.Tensor) -> np.ndarray:
    """Rows of decoded images (R, N, C, *spatial) → display frames (R, F, H, W)."""
    return np.stack([series.frames(row) for row in images])


def _input(run: DiffAERun, series: SubjectSeries) -> torch.Tensor:
    """The series' input in the decoded images' space: [0, 1], the channels the test stage compares."""
    return run.engine.metric_channels((series.x + 1) / 2)


def _provenance(run: DiffAERun, ddim_steps: int | None) -> dict[str, Any]:
    return {
        "run_dir": str(run.run_dir),
        "checkpoint": str(run.checkpoint),
        "use_ema": run.use_ema,
        "ddim_inversion_steps": ddim_steps or run.inversion_steps,
        "ddim_decoding_steps": ddim_steps or run.decoding_steps,
    }


def _write_views(
    stage: Path, stem: str, rows: np.ndarray, labels: list[str], title: str, frames: list[int], reference: int | None
) -> list[Path]:
    """The PNG grid of the chosen frames and, for more than one frame, the GIF over all frames."""
    cols = [f"frame {f}" for f in frames]
    compared = range(1, rows.shape[0])  # row 0 is the input
    figure = grid_figure(rows[:, frames], labels, cols, title, reference, compared)
    written = [save_figure(figure, stage / f"{stem}.png")]
    if rows.shape[1] > 1:
        written.append(write_gif(rows, labels, title, stage / f"{stem}.gif"))
    return written


def _alpha_label(alpha: float) -> str:
    return "α = 0 (own)" if alpha == 0 else f"α = {alpha:+g} SD"


def _short(series: SubjectSeries) -> str:
    """``<subject> <instance> <series>`` of a key, for titles."""
    parts = series.key.split("/")
    return " ".join([parts[0], *parts[2:]]) if len(parts) == 4 else series.key


@dataclass
class ManipulationRows:
    """Decoded images (A, N, C', *spatial) and their display: rows (1 + A, F, H, W), the input first."""

    images: torch.Tensor
    rows: np.ndarray
    labels: list[str]
    title: str
    reference: int | None  # the row of α = 0, if asked for


def manipulation_rows(
    run: DiffAERun,
    series: SubjectSeries,
    direction: Direction,
    alphas: list[float],
    ddim_steps: int | None,
    progress: bool,
) -> ManipulationRows:
    """Decode the series at each α along ``direction`` and lay the result out as labelled display rows."""
    images = manipulate(run, series, direction.offsets(alphas), ddim_steps, progress)
    rows = np.concatenate([_display(series, _input(run, series)[None]), _display(series, images)])  # input on top
    labels = ["input", *(_alpha_label(a) for a in alphas)]
    reference = 1 + alphas.index(0.0) if 0.0 in alphas else None
    title = f"{_short(series)}: {direction.label}, α in SDs (σ = {direction.sd:.3g})"
    return ManipulationRows(images, rows, labels, title, reference)


def manipulation_figure(
    run: DiffAERun,
    series: SubjectSeries,
    direction: Direction,
    alphas: list[float],
    frames: list[int] | None,
    ddim_steps: int | None,
    progress: bool,
) -> Any:
    """The labelled grid (matplotlib figure) of :func:`manipulation_rows` for the chosen frames."""
    m = manipulation_rows(run, series, direction, alphas, ddim_steps, progress)
    shown = pick_frames(m.rows.shape[1], frames)
    cols = [f"frame {f}" for f in shown]
    return grid_figure(m.rows[:, shown], m.labels, cols, m.title, m.reference, range(1, m.rows.shape[0]))


def _manipulation(
    run: DiffAERun, series: SubjectSeries, direction: Direction, req: ManipulationRequest, stage: Path
) -> list[Path]:
    m = manipulation_rows(run, series, direction, req.alphas, req.ddim_steps, req.progress)
    frames = pick_frames(m.rows.shape[1], req.frames)
    stem = _stem("manip", series.subject, direction.label)
    written = _write_views(stage, stem, m.rows, m.labels, m.title, frames, m.reference)
    arrays = {
        "images": m.images.cpu().numpy(),
        "input": _input(run, series).cpu().numpy(),
        "alphas": np.asarray(req.alphas),
        "direction": direction.vector,
        "indices": np.asarray(series.indices),
    }
    attrs = {"key": series.key, "direction_label": direction.label, "direction_sd": direction.sd}
    written.append(write_tensors(stage / f"{stem}.h5", arrays, {**attrs, **_provenance(run, req.ddim_steps)}))
    return written


def _interpolation(
    run: DiffAERun, a: SubjectSeries, b: SubjectSeries, req: ManipulationRequest, stage: Path
) -> list[Path]:
    ts = fractions(req.steps)
    images = interpolate(run, a, b, ts, req.ddim_steps, req.progress)
    rows = np.concatenate(
        [_display(a, _input(run, a)[None]), _display(a, images), _display(b, _input(run, b)[None])]
    )  # inputs at both ends
    frames = pick_frames(rows.shape[1], req.frames)
    labels = [f"input {a.subject}", *(f"t = {t:.2g}" for t in ts), f"input {b.subject}"]
    title = f"{_short(a)} → {_short(b)}: lerp on z, slerp on x_T"
    stem = _stem("interp", a.subject, b.subject)
    written = _write_views(stage, stem, rows, labels, title, frames, None)
    arrays = {
        "images": images.cpu().numpy(),
        "input_a": _input(run, a).cpu().numpy(),
        "input_b": _input(run, b).cpu().numpy(),
        "fractions": ts,
    }
    attrs = {"key_a": a.key, "key_b": b.key, **_provenance(run, req.ddim_steps)}
    written.append(write_tensors(stage / f"{stem}.h5", arrays, attrs))
    return written


def run_manipulation(req: ManipulationRequest) -> list[Path]:
    """Check everything, decode, write into ``req.out`` (default ``<run>/Manipulation``); returns the files written."""
    req.check()
    run = load_diffae_run(req.run_dir, req.load_best, req.device, weights=False)
    series = [load_subject(run, s, req.series) for s in req.subjects]
    pair = [load_subject(run, s, req.series) for s in req.between] if req.between else []
    direction = resolve_direction(req.direction, reference_latents(run.run_dir, req.emb)) if req.direction else None
    for s in series + pair:
        pick_frames(s.frames(s.x).shape[0], req.frames)  # a bad --frames is refused before any decoding
    load_run_weights(run, req.device)  # the input is good: now the weights
    series = [replace(s, x=s.x.to(run.device)) for s in series]
    pair = [replace(s, x=s.x.to(run.device)) for s in pair]
    out = Path(req.out) if req.out else run.run_dir / "Manipulation"
    with staged_folder(out) as stage:
        written = [p for s in series for p in _manipulation(run, s, direction, req, stage)] if direction else []
        if pair:
            written += _interpolation(run, pair[0], pair[1], req, stage)
    return [out / p.name for p in written]


def parse_alphas(values: Sequence[str]) -> list[float]:
    """``--alphas`` strings → floats, one clear error for a value that is not a number."""
    try:
        return [float(v) for v in values]
    except ValueError:
        bad = next(v for v in values if not _is_float(v))
        raise ConfigError(
            f"--alphas {bad!r} is not a number; expected steps in standard deviations, e.g. -2 0 2"
        ) from None


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


__all__ = [
    "ManipulationRequest",
    "ManipulationRows",
    "manipulation_figure",
    "manipulation_rows",
    "parse_alphas",
    "run_manipulation",
]
