"""The end-of-run summary table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def print_summary(metrics: dict[str, Any], output_dir: Path) -> None:
    """Print the run's metrics as a table, with where ``metrics.json`` and, from a CSV logger, the attention
    heatmaps were written."""
    table = Table(title="seq2seq-lit run summary")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in sorted(metrics):
        value = metrics[key]
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console = Console()
    console.print(table)
    # soft_wrap: paths stay on one line, whole, however narrow the terminal
    console.print(f"metrics written to {output_dir / 'metrics.json'}", soft_wrap=True)
    if heatmaps := sorted(output_dir.glob("*/version_*/images/*attention*.png")):  # CSV loggers' image files
        where = f"{heatmaps[0].parent}, e.g. {heatmaps[-1].name}"
        console.print(f"attention heatmaps ({len(heatmaps)}) written to {where}", soft_wrap=True)
