"""The explorer's figures (matplotlib, Agg, no pyplot state): image panels, the latent vector, the latent map.

Each function returns an RGB array (H, W, 3) uint8, which the browser shows as a PNG. Figures are built on
:class:`matplotlib.figure.Figure` directly, so concurrent requests never share pyplot's global figure.
"""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

INPUT_COLOUR = "#1f77b4"
MOVED_COLOUR = "#d62728"


def render(fig: Figure) -> np.ndarray:
    """The figure drawn by Agg as an RGB array (H, W, 3) uint8."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def image_panels(
    frame: int,
    n_frames: int,
    inp: np.ndarray,
    recon: np.ndarray,
    moved: np.ndarray | None,
    moved_label: str,
) -> np.ndarray:
    """Input, reconstruction and |input − reconstruction| of one frame, then the moved decode and its change.

    inp, recon, moved: (H, W) in [0, 1]; ``moved`` None leaves the last two panels out. The absolute difference
    has its own scale (0 .. its maximum) so small errors stay visible; the change is signed, on a symmetric scale.
    """
    panels: list[tuple[str, np.ndarray, dict]] = [
        ("input", inp, {"cmap": "gray", "vmin": 0, "vmax": 1}),
        ("reconstruction", recon, {"cmap": "gray", "vmin": 0, "vmax": 1}),
        ("|input − reconstruction|", np.abs(inp - recon), {"cmap": "magma", "vmin": 0}),
    ]
    if moved is not None:
        change = moved - recon
        bound = max(float(np.abs(change).max()), 1e-6)
        panels += [
            (moved_label, moved, {"cmap": "gray", "vmin": 0, "vmax": 1}),
            ("moved − reconstruction", change, {"cmap": "RdBu_r", "vmin": -bound, "vmax": bound}),
        ]
    fig = Figure(figsize=(2.3 * len(panels), 2.75), dpi=100, layout="constrained")
    for n, (title, image, style) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), n + 1)
        shown = ax.imshow(np.clip(image, -1, 1), interpolation="nearest", **style)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        if n >= 2:  # the difference scales are not [0, 1]: give them a colour bar
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=7)
    fig.suptitle(f"frame {frame + 1} of {n_frames}", fontsize=9)
    return render(fig)


def latent_bars(z: np.ndarray, moved: np.ndarray | None, title: str) -> np.ndarray:
    """The semantic latent z (L,) as bars; the moved latent (L,) as markers on top when it differs from z."""
    fig = Figure(figsize=(5.2, 2.9), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    index = np.arange(z.size)
    ax.bar(index, z, color=INPUT_COLOUR, label="z (subject)")
    if moved is not None and not np.allclose(moved, z):
        ax.scatter(index, moved, color=MOVED_COLOUR, marker="_", s=120, linewidths=2.5, label="z moved", zorder=3)
        ax.legend(fontsize=8, loc="best")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xlabel("latent index")
    ax.set_ylabel("value")
    ax.set_title(title, fontsize=9)
    if z.size <= 32:
        ax.set_xticks(index)
    ax.tick_params(labelsize=7)
    return render(fig)


def latent_map(
    reference: np.ndarray,
    subject: np.ndarray,
    moved: np.ndarray | None,
    explained: tuple[float, float],
    title: str,
) -> np.ndarray:
    """The reference latents in 2-D PCA coordinates (N, 2), the subject's points (S, 2) and the moved ones (S, 2).

    ``explained``: the share of variance of the two components, for the axis labels.
    """
    fig = Figure(figsize=(4.2, 3.4), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(reference[:, 0], reference[:, 1], s=14, color="0.65", label=f"run's latents ({len(reference)})")
    ax.scatter(subject[:, 0], subject[:, 1], s=70, marker="*", color=INPUT_COLOUR, label="subject", zorder=3)
    if moved is not None and not np.allclose(moved, subject):
        ax.scatter(moved[:, 0], moved[:, 1], s=50, marker="D", color=MOVED_COLOUR, label="moved", zorder=4)
        for start, end in zip(subject, moved, strict=True):
            ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "->", "color": MOVED_COLOUR})
    ax.set_xlabel(f"PC1 ({explained[0]:.0%} of variance)")
    ax.set_ylabel(f"PC2 ({explained[1]:.0%} of variance)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="best")
    ax.tick_params(labelsize=7)
    return render(fig)


__all__ = ["image_panels", "latent_bars", "latent_map", "render"]
