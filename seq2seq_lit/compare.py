"""Compare finished runs: ``python -m seq2seq_lit.compare logs/train/multiruns/<date>`` (console script ``s2s-compare``).

Reads every run folder below the given paths (a folder with ``.hydra/overrides.yaml`` and ``metrics.json``), and prints
one row per run with the overridden config keys whose values differ between the runs (a run that does not override a
key shows "default") and the chosen metrics. ``--plot`` saves a
bar chart of one metric per run as PNG.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

DEFAULT_METRICS = ("test/bleu", "test/chrf", "val/bleu_best", "global_step", "train_seconds")


@dataclass
class Run:
    """A finished run: its folder, its command-line overrides (key -> value) and its metrics."""

    path: Path
    overrides: dict[str, str]
    metrics: dict[str, Any]


def find_runs(paths: Sequence[str | Path]) -> list[Run]:
    """Every run folder at or below ``paths`` with both ``.hydra/overrides.yaml`` and ``metrics.json``, sorted."""
    runs = []
    for root in paths:
        for metrics_file in sorted(Path(root).rglob("metrics.json")):
            overrides_file = metrics_file.parent / ".hydra" / "overrides.yaml"
            if overrides_file.is_file():
                items = [str(o).split("=", 1) for o in OmegaConf.to_container(OmegaConf.load(overrides_file))]
                overrides = {key.lstrip("+~"): value for key, value in (i if len(i) == 2 else (i[0], "") for i in items)}
                runs.append(Run(metrics_file.parent, overrides, json.loads(metrics_file.read_text())))
    return runs


def differing_keys(runs: Sequence[Run]) -> list[str]:
    """Overridden keys whose values are not the same in every run."""
    keys = sorted({k for run in runs for k in run.overrides})
    return [k for k in keys if len({run.overrides.get(k) for run in runs}) > 1]


def comparison_table(runs: Sequence[Run], metrics: Sequence[str] = DEFAULT_METRICS) -> Table:
    """A rich table: one row per run; the differing config keys, then ``metrics``."""
    keys = differing_keys(runs) if len(runs) > 1 else []
    table = Table(title=f"{len(runs)} run(s)")
    for column in ["run", *keys, *metrics]:
        table.add_column(column, justify="right" if column in metrics else "left")
    for run in runs:
        cells = [run.path.name, *(run.overrides.get(k, "default") for k in keys)]
        cells += [_format(run.metrics.get(m)) for m in metrics]
        table.add_row(*cells)
    return table


def _format(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


def plot_metric(runs: Sequence[Run], metric: str, label_key: str | None, path: Path) -> None:
    """Bar chart of ``metric`` per run, labelled by the override of ``label_key`` (else the folder name)."""
    from matplotlib.figure import Figure

    labels = [run.overrides.get(label_key, "default") if label_key else run.path.name for run in runs]
    values = [float(run.metrics.get(metric, float("nan"))) for run in runs]
    fig = Figure(figsize=(max(4.0, 0.8 * len(runs) + 1.5), 3.5))
    ax = fig.add_subplot()
    ax.bar(range(len(runs)), values)
    ax.set_xticks(range(len(runs)), labels=labels, rotation=45, ha="right")
    ax.set_ylabel(metric)
    fig.tight_layout()
    fig.savefig(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="s2s-compare", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="run folders or folders above them (e.g. a multirun folder)")
    parser.add_argument("--metrics", default=",".join(DEFAULT_METRICS), help="comma-separated metric names")
    parser.add_argument("--plot", type=Path, help="save a bar chart of the first metric to this PNG")
    parser.add_argument("--label", help="overridden key that labels the bars, e.g. model/attention")
    args = parser.parse_args(argv)
    runs = find_runs(args.paths)
    if not runs:
        parser.error(f"no run folders (with .hydra/overrides.yaml and metrics.json) under {', '.join(args.paths)}")
    metrics = [m for m in args.metrics.split(",") if m]
    console = Console()
    if not console.is_terminal:
        console = Console(width=240)  # a file or pipe gets the whole table, not one squeezed to 80 columns
    console.print(comparison_table(runs, metrics))
    if args.plot:
        plot_metric(runs, metrics[0], args.label, args.plot)
        print(f"plot written to {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
