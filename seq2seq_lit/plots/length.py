"""BLEU against source sentence length, one line per run, in the style of Bahdanau et al. (2015, Fig. 2)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

_BUCKET = re.compile(r"test/bleu_src_len_(\d+)(?:-(\d+)|\+)")


def length_buckets_of(metrics: Mapping[str, Any]) -> list[tuple[str, float, int | None]]:
    """``(label, BLEU, sentences)`` of a run's buckets, shortest first: the ``test/bleu_src_len_<label>`` metrics of a
    training run (sentences None where it did not log ``test/sentences_src_len_<label>``), or the
    ``bleu_by_source_length`` of an ``s2s-eval`` metrics file (:mod:`seq2seq_lit.evaluate`)."""
    if isinstance(evaluated := metrics.get("bleu_by_source_length"), Mapping):
        rows = [(label, float(b["bleu"]), int(b["sentences"])) for label, b in evaluated.items()]
        return sorted(rows, key=lambda row: int(re.match(r"\d+", row[0])[0]))
    found = []
    for key, value in metrics.items():
        if match := _BUCKET.fullmatch(key):
            label = key.removeprefix("test/bleu_src_len_")
            count = metrics.get(f"test/sentences_src_len_{label}")
            found.append((int(match[1]), label, float(value), None if count is None else int(count)))
    return [(label, bleu, count) for _, label, bleu, count in sorted(found)]


def plot_bleu_by_length(curves: Mapping[str, Mapping[str, Any]], path: Path | str, title: str = "") -> Figure:
    """Save a line plot of test BLEU per source-length bucket for each run (``name -> metrics``) as PNG.

    The x labels carry the bucket's sentence count (from the first run that logged it).

    Raises:
        ValueError: no run has bucket metrics.
    """
    buckets = {name: length_buckets_of(metrics) for name, metrics in curves.items()}
    buckets = {name: b for name, b in buckets.items() if b}
    if not buckets:
        raise ValueError(
            "no run has test/bleu_src_len_* metrics (written by the test stage of training) or bleu_by_source_length "
            "(written by s2s-eval)"
        )
    labels: list[str] = []
    counts: dict[str, int] = {}
    for rows in buckets.values():
        for label, _, count in rows:
            if label not in labels:
                labels.append(label)
            if count is not None:
                counts.setdefault(label, count)
    labels.sort(key=lambda label: int(re.match(r"\d+", label)[0]))
    fig = Figure(figsize=(6.0, 4.0), dpi=100)
    ax = fig.add_subplot()
    for name, rows in buckets.items():
        by_label = {label: bleu for label, bleu, _ in rows}
        xs = [k for k, label in enumerate(labels) if label in by_label]
        ax.plot(xs, [by_label[labels[k]] for k in xs], marker="o", label=name)
    ticks = [f"{label}\n({counts[label]})" if label in counts else label for label in labels]
    ax.set_xticks(range(len(labels)), labels=ticks)
    ax.set_xlabel("source sentence length in words (sentences)")
    ax.set_ylabel("BLEU")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")  # beside the curves, not over them
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    return fig


def log_plot_to_wandb(path: Path | str, project: str, key: str = "bleu_by_source_length", **init: Sequence[str] | str) -> None:
    """Log the PNG at ``path`` as an image to a new W&B run of ``project`` (job type ``compare``), then finish it."""
    import wandb

    # an explicit dir: wandb keeps the settings of its first run in a process, WANDB_DIR included
    init.setdefault("dir", os.environ.get("WANDB_DIR"))
    run = wandb.init(project=project, job_type="compare", **init)
    try:
        run.log({key: wandb.Image(str(path))})
    finally:
        run.finish()
