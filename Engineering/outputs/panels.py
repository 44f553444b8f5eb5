"""Reconstruction panels: one PNG per saved series with rows input, reconstruction and |difference|.

Panels go to ``<Output>/panels/`` next to ``recon.h5``. Columns are a few evenly spaced depth slices (3D) or
samples of the series (2D). Input and reconstruction are shown in [0, 1] (clipped); the difference row has its own
scale (0 .. its maximum) so that small errors stay visible. File names come from the H5 key and are sanitised so
that no key (e.g. a crafted subject ID ``../../x``) can name a file outside the panel folder.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

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


def render_panel(gt_frames: np.ndarray, recon_frames: np.ndarray, n_slices: int = 4) -> np.ndarray:
    """Grey uint8 panel (3 rows × n columns of tiles) from frames (N, H, W) of ground truth and reconstruction.

    Rows: input clipped to [0, 1], reconstruction clipped to [0, 1], |input − reconstruction| divided by its
    maximum over the shown tiles. NaN counts as 0.
    """
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


def _write_png(out_dir: Path, key: str, image: np.ndarray) -> Path:
    """Write ``image`` to ``out_dir/panel_name(key)`` atomically (see :func:`atomic_write_bytes`)."""
    out_dir = Path(out_dir)
    path = out_dir / panel_name(key)
    if path.resolve().parent != out_dir.resolve():
        raise ValueError(f"panel name for key {key!r} resolves outside {out_dir}")
    png = io.BytesIO()
    Image.fromarray(image, mode="L").save(png, format="PNG")
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
    return _write_png(out_dir, key, render_panel(_frames_of_sample(gt), _frames_of_sample(recon), n_slices))


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
        written.append(_write_png(out_dir, key, render_panel(gt_frames, recon_frames, n_slices)))
    return written


__all__ = ["PANEL_DIR", "panel_keys_to_write", "panel_name", "render_panel", "write_recon_panel", "write_recon_panels"]
