"""Figures of the run report, each a matplotlib (Agg) figure returned to the caller (nothing drawn by hand).

Inputs are plain tables and arrays: logged scalars per tag, the test metrics table, latents (N, L), frames of
inputs and reconstructions, an optional phenotype per latent row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from Engineering.outputs.latent_figures import pyplot

MAX_HISTOGRAMS = 32  # per-latent histograms drawn (a box plot always shows every latent)


def _grid(n: int, cols: int, cell: tuple[float, float]) -> tuple[Any, np.ndarray]:
    plt = pyplot()
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cell[0] * cols, cell[1] * rows), squeeze=False, layout="constrained")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat[:n]


def training_curves(scalars: Mapping[str, pd.DataFrame]) -> Any:
    """One panel per logged tag: value against global step (``scalars``: tag → frame with columns step, value)."""
    fig, axes = _grid(len(scalars), 3, (4.0, 2.6))
    for ax, (tag, frame) in zip(axes, sorted(scalars.items()), strict=True):
        ax.plot(frame["step"], frame["value"], marker="o" if len(frame) < 20 else None, markersize=3, linewidth=1)
        ax.set_title(tag, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    return fig


def metric_distributions(metrics: pd.DataFrame, columns: Sequence[str]) -> Any:
    """A histogram per test metric column, with its median marked."""
    fig, axes = _grid(len(columns), 3, (3.6, 2.6))
    for ax, column in zip(axes, columns, strict=True):
        values = pd.to_numeric(metrics[column], errors="coerce").dropna()
        ax.hist(values, bins=min(30, max(5, len(values) // 3)), color="#4c72b0")
        ax.axvline(values.median(), color="#c44e52", linestyle="--", linewidth=1, label=f"median {values.median():.3g}")
        ax.set_title(f"{column} (n = {len(values)})", fontsize=9)
        ax.legend(fontsize=7)
        ax.tick_params(labelsize=7)
    return fig


def recon_panel(inputs: np.ndarray, recons: np.ndarray, frames: Sequence[int], title: str) -> Any:
    """Rows input, reconstruction, |difference| of ``frames`` of (F, H, W) stacks in [0, 1]."""
    plt = pyplot()
    n = len(frames)
    fig, axes = plt.subplots(3, n, figsize=(0.8 + 1.7 * n, 5.6), squeeze=False, layout="constrained")
    diff = np.abs(inputs[list(frames)] - recons[list(frames)])
    top = float(diff.max()) or 1.0
    rows = (("input", inputs[list(frames)], "gray", 1.0), ("reconstruction", recons[list(frames)], "gray", 1.0))
    for r, (label, stack, cmap, vmax) in enumerate((*rows, (f"|difference|\n(0–{top:.2f})", diff, "magma", top))):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(np.clip(stack[c], 0, vmax), cmap=cmap, vmin=0, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"frame {frames[c]}", fontsize=8)
        axes[r, 0].set_ylabel(label, fontsize=8)
    fig.suptitle(title, fontsize=9)
    return fig


def latent_histograms(latents: np.ndarray) -> Any:
    """A box plot of every latent, then histograms of the first :data:`MAX_HISTOGRAMS` latents."""
    plt = pyplot()
    dim = latents.shape[1]
    shown = min(dim, MAX_HISTOGRAMS)
    cols = 8
    rows = -(-shown // cols)
    fig = plt.figure(figsize=(1.9 * cols, 2.4 + 1.5 * rows), layout="constrained")
    spec = fig.add_gridspec(1 + rows, cols, height_ratios=[1.6] + [1.0] * rows)
    box = fig.add_subplot(spec[0, :])
    box.boxplot(latents, showfliers=False)
    box.set_xticks(range(1, dim + 1), [f"Z{i}" if dim <= 32 or i % 8 == 0 else "" for i in range(dim)], fontsize=7)
    box.set_title(f"every latent (N = {latents.shape[0]}); boxes: quartiles, whiskers: 1.5 IQR", fontsize=9)
    for i in range(shown):
        ax = fig.add_subplot(spec[1 + i // cols, i % cols])
        ax.hist(latents[:, i], bins=min(20, max(5, latents.shape[0] // 3)), color="#55a868")
        ax.set_title(f"Z{i}", fontsize=8)
        ax.locator_params(axis="x", nbins=3)  # narrow panels: three ticks stay legible
        ax.tick_params(labelsize=6)
        ax.set_yticks([])
    return fig


def correlation_matrix(latents: np.ndarray) -> Any:
    """Pearson correlation between latents (L × L), diverging colours from −1 to 1."""
    plt = pyplot()
    dim = latents.shape[1]
    corr = np.corrcoef(latents, rowvar=False) if latents.shape[0] > 1 else np.eye(dim)
    size = min(9.0, 3.0 + 0.12 * dim)
    fig, ax = plt.subplots(figsize=(size + 1.2, size), layout="constrained")
    image = ax.imshow(np.nan_to_num(corr), cmap="coolwarm", vmin=-1, vmax=1, interpolation="nearest")
    ticks = range(0, dim, max(1, dim // 16))
    ax.set_xticks(list(ticks), [f"Z{i}" for i in ticks], rotation=90, fontsize=7)
    ax.set_yticks(list(ticks), [f"Z{i}" for i in ticks], fontsize=7)
    fig.colorbar(image, ax=ax, shrink=0.8, label="Pearson r")
    ax.set_title(f"latent correlations (N = {latents.shape[0]})", fontsize=9)
    return fig


def pca_map(latents: np.ndarray, colour: np.ndarray | None = None, colour_label: str = "") -> Any:
    """The latents' first two principal components; coloured by ``colour`` (N,) when given (grey where missing)."""
    from sklearn.decomposition import PCA

    plt = pyplot()
    pca = PCA(n_components=2).fit(latents)
    xy = pca.transform(latents)  # (N, 2)
    fig, ax = plt.subplots(figsize=(6.4, 5.0), layout="constrained")
    if colour is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=18, color="#4c72b0")
    else:
        known = np.isfinite(colour)
        ax.scatter(xy[~known, 0], xy[~known, 1], s=12, color="#bbbbbb", label="no value")
        points = ax.scatter(xy[known, 0], xy[known, 1], s=18, c=colour[known], cmap="viridis")
        fig.colorbar(points, ax=ax, label=colour_label)
        if (~known).any():
            ax.legend(fontsize=7)
    ratio = pca.explained_variance_ratio_
    ax.set_xlabel(f"PC1 ({100 * ratio[0]:.1f}% of variance)")
    ax.set_ylabel(f"PC2 ({100 * ratio[1]:.1f}% of variance)")
    ax.set_title(
        f"PCA of {latents.shape[0]} latent vectors" + (f", coloured by {colour_label}" if colour_label else "")
    )
    ax.grid(alpha=0.3)
    return fig


__all__ = [
    "MAX_HISTOGRAMS",
    "correlation_matrix",
    "latent_histograms",
    "metric_distributions",
    "pca_map",
    "recon_panel",
    "training_curves",
]
