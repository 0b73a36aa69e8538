"""The gradient that reaches each source position (:mod:`seq2seq_lit.analysis.gradients`), by distance from the
source's end and from its start, one line per model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure

OFFSETS = (
    ("from_end", "distance from the source's end (pieces; 0 = EOS)"),
    ("from_start", "position from the source's start (pieces)"),
)


def plot_gradient_profiles(curves: Mapping[str, Sequence[Mapping[str, float]]], path: Path | str, title: str = "") -> Figure:
    """Save two panels as PNG: the mean norm of d loss / d x_j against the distance from the end and against the
    position from the start, log scale, one line per model (``name -> rows`` of
    :meth:`~seq2seq_lit.analysis.gradients.GradientProfile.rows`).

    Raises:
        ValueError: no model has a row.
    """
    curves = {name: rows for name, rows in curves.items() if rows}
    if not curves:
        raise ValueError("no gradient profile to plot (no sentence was measured)")
    fig = Figure(figsize=(10.0, 4.0), dpi=100)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (key, label) in zip(axes, OFFSETS):
        for name, rows in curves.items():
            ax.plot([r["offset"] for r in rows], [r[key] for r in rows], marker=".", label=name)
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("mean ||d loss / d x_j|| (nats per target token)")
    axes[0].legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    return fig
