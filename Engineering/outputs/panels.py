"""Reconstruction panels: one PNG per saved series with rows input, reconstruction and |difference|.

Panels go to ``<Output>/panels/`` next to ``recon.h5``. Columns are a few evenly spaced depth slices (3D: slice or
time frame, whichever the depth axis holds) or samples of the series (2D). Input and reconstruction are shown in
[0, 1] (clipped); the difference row has its own scale (0 .. its maximum) so that small errors stay visible. The
saved panel (:func:`labelled_panel`) names the rows, the subject/field/instance/series, each column's index and
carries a colour bar per row; TensorBoard receives the same image. File names come from the H5 key and are sanitised so
that no key (e.g. a crafted subject ID ``../../x``) can name a file outside the panel folder.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from Engineering.outputs.files import atomic_write_bytes

PANEL_DIR = "panels"
ROWS = ("input", "reconstruction", "|difference|")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_STEM = 160
_GAP = 2  # pixels between tiles
_MIN_TILE = 96  # small images are enlarged (nearest neighbour) to at least this many pixels per side


def panel_name(key: str) -> str:
    """File name of the panel of ``key`` (``<pid>/<field>/<instance>/<series>`` → ``<pid>_<field>_<instance>_<series>.png``).

    Only ``[A-Za-z0-9._-]`` survive (every other run of characters becomes ``_``), leading dots are removed and
    the stem is at most 160 characters. Unless the key has exactly four non-empty components that sanitising left
    unchanged, a short hash of the key is appended so that two different keys never share a file.
    """
    parts = str(key).split("/")
    plain = "_".join(parts)
    stem = _UNSAFE.sub("_", plain).lstrip(".")[:_MAX_STEM] or "panel"
    if stem != plain or len(parts) != 4 or not all(parts):
        stem = f"{stem}_{hashlib.sha1(str(key).encode()).hexdigest()[:8]}"
    return f"{stem}.png"


def panel_keys_to_write(keys: Iterable[str], subjects: Collection[str] | None) -> list[str]:
    """The sorted keys whose subject ID (first key component) is exactly one of ``subjects`` (None = every key)."""
    wanted = None if subjects is None else {str(s) for s in subjects}
    return sorted(k for k in keys if wanted is None or str(k).split("/", 1)[0] in wanted)


def _frames_of_sample(x: np.ndarray) -> np.ndarray:
    """One sample (C, D, H, W) or (C, H, W) → channel 0 as frames (D, H, W) or (1, H, W)."""
    if x.ndim == 4:
        return x[0]
    if x.ndim == 3:
        return x[:1]
    raise ValueError(f"panel input has shape {x.shape}; expected (C, D, H, W) for 3D or (C, H, W) for 2D")


def _pick(n_frames: int, n_slices: int) -> np.ndarray:
    """Up to ``n_slices`` evenly spaced, distinct frame indices in [0, n_frames)."""
    return np.unique(np.linspace(0, n_frames - 1, num=min(n_slices, n_frames)).round().astype(int))


def _magnitude(x: np.ndarray) -> np.ndarray:
    x = np.abs(x) if np.iscomplexobj(x) else np.asarray(x, dtype=np.float64)
    return np.nan_to_num(x.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0)


def _panel_rows(
    gt_frames: np.ndarray, recon_frames: np.ndarray, n_slices: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shown frame indices, input and reconstruction clipped to [0, 1], and |input − reconstruction| (unscaled)."""
    if gt_frames.shape != recon_frames.shape or gt_frames.ndim != 3:
        raise ValueError(
            f"panel frames have shapes {gt_frames.shape} (input) and {recon_frames.shape} (reconstruction); "
            "expected two equal (N, H, W) stacks"
        )
    if n_slices < 1:
        raise ValueError(f"n_slices={n_slices}; expected at least 1")
    idx = _pick(gt_frames.shape[0], n_slices)
    gt = np.clip(_magnitude(gt_frames[idx]), 0, 1)  # (n, H, W)
    recon = np.clip(_magnitude(recon_frames[idx]), 0, 1)
    diff = np.abs(_magnitude(gt_frames[idx]) - _magnitude(recon_frames[idx]))
    return idx, gt, recon, diff


def render_panel(gt_frames: np.ndarray, recon_frames: np.ndarray, n_slices: int = 4) -> np.ndarray:
    """Grey uint8 panel (3 rows × n columns of tiles) from frames (N, H, W) of ground truth and reconstruction.

    Rows: input clipped to [0, 1], reconstruction clipped to [0, 1], |input − reconstruction| divided by its
    maximum over the shown tiles. NaN counts as 0.
    """
    idx, gt, recon, diff = _panel_rows(gt_frames, recon_frames, n_slices)
    peak = float(diff.max())
    diff = diff / peak if peak > 0 else diff
    n, h, w = gt.shape
    scale = max(1, -(-_MIN_TILE // max(h, w)))  # ceil division: enlarge tiny tiles
    th, tw = h * scale, w * scale
    canvas = np.zeros((3 * th + 2 * _GAP, n * tw + (n - 1) * _GAP), dtype=np.uint8)
    for r, row in enumerate((gt, recon, diff)):
        for c in range(n):
            tile = np.kron(row[c], np.ones((scale, scale)))  # nearest-neighbour enlargement
            y, x = r * (th + _GAP), c * (tw + _GAP)
            canvas[y : y + th, x : x + tw] = np.rint(tile * 255).astype(np.uint8)
    return canvas


def _title(key: str) -> str:
    parts = str(key).split("/")
    if len(parts) == 4:
        return f"subject {parts[0]} · field {parts[1]} · instance {parts[2]} · {parts[3]}"
    return str(key)


def labelled_panel(
    gt_frames: np.ndarray, recon_frames: np.ndarray, key: str, n_slices: int = 4, index_name: str = "slice/time"
) -> np.ndarray:
    """RGB uint8 image of :func:`panel_figure` (what panels/*.png and TensorBoard show)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(panel_figure(gt_frames, recon_frames, key, n_slices, index_name))
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def panel_figure(
    gt_frames: np.ndarray, recon_frames: np.ndarray, key: str, n_slices: int = 4, index_name: str = "slice/time"
) -> Any:
    """The labelled panel of frames (N, H, W) as a matplotlib Figure (no pyplot state): the rows of
    :func:`render_panel` named input / reconstruction / |difference|, ``key`` as the title (subject, field,
    instance, series), each column's frame index (``index_name`` k) and a colour bar per row (the difference row's
    in its own units)."""
    from matplotlib.figure import Figure

    idx, gt, recon, diff = _panel_rows(gt_frames, recon_frames, n_slices)
    peak = float(diff.max()) or 1.0
    n = len(idx)
    fig = Figure(figsize=(1.5 * n + 1.4, 5.0), dpi=100, layout="constrained")
    axes = fig.subplots(3, n, squeeze=False)
    for r, (name, row, vmax, cmap) in enumerate(
        zip(ROWS, (gt, recon, diff), (1.0, 1.0, peak), ("gray", "gray", "magma"), strict=True)
    ):
        for c in range(n):
            ax = axes[r][c]
            image = ax.imshow(row[c], cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"{index_name} {idx[c]}", fontsize=8)
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
        fig.colorbar(image, ax=list(axes[r]), fraction=0.046, pad=0.02).ax.tick_params(labelsize=7)
    fig.suptitle(_title(key), fontsize=9)
    return fig


def _write_png(out_dir: Path, key: str, image: np.ndarray) -> Path:
    """Write ``image`` to ``out_dir/panel_name(key)`` atomically (see :func:`atomic_write_bytes`)."""
    out_dir = Path(out_dir)
    path = out_dir / panel_name(key)
    if path.resolve().parent != out_dir.resolve():
        raise ValueError(f"panel name for key {key!r} resolves outside {out_dir}")
    png = io.BytesIO()
    Image.fromarray(image).save(png, format="PNG")
    atomic_write_bytes(path, png.getbuffer())
    return path


def write_recon_panel(out_dir: Path, key: str, gt: np.ndarray, recon: np.ndarray, n_slices: int = 4) -> Path:
    """Write the panel of one sample and return its path.

    Args:
        out_dir: the panel folder (``<Output>/panels``); created if needed.
        key: the H5 key ``<pid>/<field>/<instance>/<series>``; only its sanitised form names the file.
        gt, recon: one sample each, (C, D, H, W) in 3D (channel 0, ``n_slices`` depth slices) or (C, H, W) in 2D
            (channel 0, one column), in the [0, 1] metric space.
        n_slices: columns shown for 3D samples.
    """
    gt, recon = np.asarray(gt), np.asarray(recon)
    if gt.shape != recon.shape:
        raise ValueError(f"panel of {key!r}: input shape {gt.shape} != reconstruction shape {recon.shape}")
    frames = _frames_of_sample(gt), _frames_of_sample(recon)
    index_name = "slice/time" if gt.ndim == 4 else "sample"
    return _write_png(out_dir, key, labelled_panel(*frames, key, n_slices, index_name))


def _dense_frames(dense: np.ndarray, is3D: bool) -> np.ndarray:
    """Frames (N, H, W) of one dense result array (nI, nJ, nK, *sample), channel possibly squeezed (recon.h5).

    3D: the depth slices of the first stored sample; 2D: channel 0 of every stored sample, in (i, j, k) order.
    """
    sample_ndim = 4 if is3D else 3
    if dense.ndim == 3 + sample_ndim - 1:  # recon.h5 squeezes a singleton channel axis
        dense = dense[:, :, :, None]
    if dense.ndim != 3 + sample_ndim:
        raise ValueError(f"dense result of shape {dense.shape} does not hold {'3D' if is3D else '2D'} samples")
    samples = dense.reshape(-1, *dense.shape[3:])  # (nI*nJ*nK, C, [D,] H, W)
    stored = [s for s in samples if not np.isnan(s).all()]
    if not stored:
        raise ValueError("dense result holds no stored sample (all NaN)")
    if is3D:
        return _frames_of_sample(stored[0])
    return np.stack([s[0] for s in stored])


def write_recon_panels(
    out_dir: Path,
    recon: Mapping[str, np.ndarray],
    ground_truth: Mapping[str, np.ndarray],
    is3D: bool,
    subjects: Collection[str] | None = None,
    n_slices: int = 4,
) -> list[Path]:
    """One panel per key of ``recon`` (dense arrays as written to recon.h5) that also has a ground truth.

    ``subjects`` restricts the keys as :func:`panel_keys_to_write` does. Returns the written paths.
    """
    written = []
    for key in panel_keys_to_write((k for k in recon if k in ground_truth), subjects):
        gt_frames = _dense_frames(np.asarray(ground_truth[key]), is3D)
        recon_frames = _dense_frames(np.asarray(recon[key]), is3D)
        index_name = "slice/time" if is3D else "sample"
        written.append(_write_png(out_dir, key, labelled_panel(gt_frames, recon_frames, key, n_slices, index_name)))
    return written


__all__ = [
    "PANEL_DIR",
    "labelled_panel",
    "panel_figure",
    "panel_keys_to_write",
    "panel_name",
    "render_panel",
    "write_recon_panel",
    "write_recon_panels",
]
