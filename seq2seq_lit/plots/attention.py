"""Attention heatmaps with matplotlib (object API, no global pyplot state)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure


def plot_attention(weights: np.ndarray, src_pieces: Sequence[str], tgt_pieces: Sequence[str], title: str = "") -> Figure:
    """Heatmap of attention weights: one row per target piece, one column per source piece.

    Args:
        weights: ``(T, S)`` array, rows summing to 1.
        src_pieces: S source labels; tgt_pieces: T target labels.

    Raises:
        ValueError: if the labels do not match the shape of ``weights``.
    """
    if weights.shape != (len(tgt_pieces), len(src_pieces)):
        raise ValueError(f"weights {weights.shape} do not match {len(tgt_pieces)} target x {len(src_pieces)} source labels")
    height, width = len(tgt_pieces), len(src_pieces)
    fig = Figure(figsize=(max(4.0, 0.35 * width + 1.5), max(3.0, 0.35 * height + 1.2)), dpi=100)
    ax = fig.add_subplot()
    image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(width), labels=list(src_pieces), rotation=90, fontsize=8)
    ax.set_yticks(range(height), labels=list(tgt_pieces), fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("target")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    return fig


def figure_to_array(fig: Figure) -> np.ndarray:
    """Render a figure to an ``(height, width, 3)`` uint8 RGB array."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
