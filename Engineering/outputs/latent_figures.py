"""Figures and files of latent manipulation: a labelled PNG grid, an animated GIF over frames, the tensors in HDF5.

A *grid* has one row per α (or interpolation step) and one column per chosen frame; frames are the network's depth
axis in 3D (time for cine data in the shipped layouts) or the samples of a 2D series. Images are shown in [0, 1]
grey levels, clipped. Everything is drawn with matplotlib (Agg); every file is written atomically.
"""

from __future__ import annotations

import io
import os
import shutil
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from Engineering.errors import ConfigError
from Engineering.fileio import atomic_write, temp_folder

MAX_GIF_FRAMES = 100


def pick_frames(n_frames: int, wanted: Sequence[int] | None, n_default: int = 4) -> list[int]:
    """The frame indices to show: ``wanted`` (checked against ``n_frames``), else up to ``n_default`` evenly spaced."""
    if wanted:
        bad = [f for f in wanted if not 0 <= f < n_frames]
        if bad:
            raise ConfigError(f"--frames {bad[0]} is out of range; the series has frames 0..{n_frames - 1}")
        return list(dict.fromkeys(int(f) for f in wanted))
    return sorted(set(np.linspace(0, n_frames - 1, num=min(n_default, n_frames)).round().astype(int).tolist()))


@contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """A hidden staging folder next to ``out`` whose entries are moved into ``out`` only when the block succeeds.

    Entries of ``out`` with the same names are replaced (a folder as a whole); a failed block leaves ``out`` as it
    was, not even created.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; expected a folder")
    stage = temp_folder(out)
    try:
        yield stage
        out.mkdir(exist_ok=True)
        for item in sorted(stage.iterdir()):
            target = out / item.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, whatever display the user has
    import matplotlib.pyplot as plt

    return plt


def grid_figure(
    images: np.ndarray,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    title: str,
    reference_row: int | None,
    compared: Sequence[int] | None = None,
) -> Any:
    """A matplotlib figure of ``images`` (R, F, H, W) in [0, 1]: rows labelled on the left, columns on top.

    With ``reference_row``, a last column shows |row − reference row| of the middle frame for the ``compared`` rows
    (default all), on one grey scale shared by them; other rows leave that cell empty (e.g. an input row).
    """
    plt = pyplot()
    n_rows, n_cols = images.shape[:2]
    extra = reference_row is not None
    width = n_cols + int(extra)
    aspect = images.shape[2] / images.shape[3]
    fig, axes = plt.subplots(
        n_rows, width, figsize=(1.1 + 1.6 * width, 0.7 + 1.6 * aspect * n_rows), squeeze=False, layout="constrained"
    )
    for r in range(n_rows):
        for c in range(n_cols):
            _tile(axes[r, c], images[r, c], "gray", 1.0)
            if r == 0:
                axes[r, c].set_title(col_labels[c], fontsize=9)
        axes[r, 0].set_ylabel(row_labels[r], fontsize=9)
    if reference_row is not None:
        mid = n_cols // 2
        rows = list(range(n_rows)) if compared is None else list(compared)
        diff = np.abs(images[:, mid] - images[reference_row, mid])  # (R, H, W)
        top = float(diff[rows].max()) or 1.0
        for r in range(n_rows):
            if r in rows:
                _tile(axes[r, -1], diff[r], "magma", top)
            else:
                axes[r, -1].axis("off")
        axes[rows[0], -1].set_title(f"|Δ| to {row_labels[reference_row]}\n{col_labels[mid]} (0–{top:.2g})", fontsize=8)
    fig.suptitle(textwrap.fill(title, width=max(40, 16 * width)), fontsize=10)
    return fig


def _tile(ax: Any, image: np.ndarray, cmap: str, top: float) -> None:
    ax.imshow(np.clip(image, 0, top), cmap=cmap, vmin=0, vmax=top, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def save_figure(fig: Any, path: Path, dpi: int = 100) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    plt = pyplot()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    finally:
        plt.close(fig)


def write_gif(images: np.ndarray, labels: Sequence[str], title: str, path: Path, fps: float = 8.0) -> Path:
    """An animated GIF over the frame axis of ``images`` (R, F, H, W): each GIF frame shows the R rows side by side.

    Each GIF frame is drawn by matplotlib with its panel labels and the frame number (at most 100 frames).
    """
    from PIL import Image

    plt = pyplot()
    n_rows, n_frames = images.shape[:2]
    frames = []
    for f in range(min(n_frames, MAX_GIF_FRAMES)):
        fig, axes = plt.subplots(1, n_rows, figsize=(0.2 + 1.6 * n_rows, 2.2), squeeze=False, layout="constrained")
        for r in range(n_rows):
            _tile(axes[0, r], images[r, f], "gray", 1.0)
            axes[0, r].set_title(labels[r], fontsize=8)
        fig.suptitle(textwrap.fill(f"{title}: frame {f}", width=max(30, 18 * n_rows)), fontsize=8)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80)
        plt.close(fig)
        buffer.seek(0)
        frames.append(Image.open(buffer).convert("P", palette=Image.Palette.ADAPTIVE))
    duration = int(1000 / fps)
    return atomic_write(
        path, lambda tmp: frames[0].save(tmp, "GIF", save_all=True, append_images=frames[1:], duration=duration, loop=0)
    )


def write_tensors(path: Path, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> Path:
    """One HDF5 file: a dataset per array (float32 for floating data) and plain root attributes, atomically."""

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            for name, value in arrays.items():
                value = np.asarray(value)
                f.create_dataset(name, data=value.astype(np.float32) if value.dtype.kind == "f" else value)
            for name, value in attrs.items():
                f.attrs[name] = value

    return atomic_write(path, write)


__all__ = [
    "MAX_GIF_FRAMES",
    "grid_figure",
    "pick_frames",
    "pyplot",
    "save_figure",
    "staged_folder",
    "write_gif",
    "write_tensors",
]
