"""Compare finished runs: ``python -m seq2seq_lit.compare logs/train/multiruns/<date>`` (console script ``s2s-compare``).

Reads runs from local Hydra run folders or from a W&B project, and prints one row per run with the overridden config
keys whose values differ between the runs (a run that does not override a key shows "default") and the chosen
metrics. ``--plot`` saves a bar chart of one metric per run as PNG; ``--plot-length`` a line plot of test BLEU against
source length, one line per run (Bahdanau et al. 2015, Fig. 2; :mod:`~seq2seq_lit.plots.length`), also logged to W&B
as an image with ``--wandb-project``. ``--plot-gradients`` draws the ``gradients.csv`` tables of ``s2s-gradients``
found below the paths into one figure, one line per model (:mod:`~seq2seq_lit.plots.gradients`).

- A local run is a folder with ``.hydra/overrides.yaml``; its metrics come from ``metrics.json`` (written when the
  run ends), or, for a run without one (interrupted, still running), from the last logged value of each column of
  its CSV logs (``csv/version_*/metrics.csv``, ``logger=csv`` or ``logger=many``).
- ``wandb://ENTITY/PROJECT`` (or ``wandb://PROJECT`` for the API key's default entity) reads every run of a W&B
  project through the public API (needs network access and ``wandb login`` or ``WANDB_API_KEY``): the overrides
  that training stores in the run config (``hydra_overrides``) and the metrics of the run summary. ``--filters``
  narrows the runs with W&B's MongoDB-style query, e.g. ``'{"group": "train/2026-11-21_10-00-00"}'``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

from .errors import ConfigError
from .utils.atomic import atomic_open
from .utils.output_guard import check_output_path

DEFAULT_METRICS = ("test/bleu", "test/chrf", "val/bleu_best", "global_step", "train_seconds")
WANDB_SCHEME = "wandb://"


@dataclass
class Run:
    """A run: where it is (a folder, or ``wandb://entity/project/run_id``), its command-line overrides (key -> value),
    its metrics, and the name shown in the table (the folder relative to the folder above all compared runs, see
    :func:`name_by_folder`, or the W&B run id)."""

    path: Path | str
    overrides: dict[str, str]
    metrics: dict[str, Any]
    name: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            self.name = Path(self.path).name


def parse_overrides(items: Iterable[Any]) -> dict[str, str]:
    """``["model/attention=dot", "+trainer.profiler=simple", "~logger"]`` -> key -> value (``+``/``~`` dropped)."""
    pairs = [str(o).split("=", 1) for o in items]
    return {key.lstrip("+~"): value for key, value in (p if len(p) == 2 else (p[0], "") for p in pairs)}


def csv_metrics(run_dir: Path) -> dict[str, Any]:
    """The last logged value of every column of the run's CSV logs (later versions win); numbers as floats."""
    metrics: dict[str, Any] = {}
    for metrics_file in sorted(run_dir.glob("csv/version_*/metrics.csv")):
        with metrics_file.open(newline="") as f:
            for row in csv.DictReader(f):
                for key, value in row.items():
                    if key and value not in ("", None):
                        metrics[key] = _number(value)
    if "step" in metrics and "global_step" not in metrics:
        metrics["global_step"] = int(metrics["step"])
    return metrics


def _number(value: str) -> Any:
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number


def find_runs(paths: Sequence[str | Path]) -> list[Run]:
    """Every run folder at or below ``paths`` (a folder with ``.hydra/overrides.yaml`` and either ``metrics.json``
    or CSV logs), sorted by path. A run whose ``metrics.json`` cannot be read (not UTF-8 JSON, e.g. cut short or
    written over) is left out with a warning on stderr naming the file; the other runs are still compared."""
    runs = []
    for root in paths:
        for overrides_file in sorted(Path(root).rglob(".hydra/overrides.yaml")):
            run_dir = overrides_file.parent.parent
            metrics_file = run_dir / "metrics.json"
            try:
                metrics = json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file.is_file() else csv_metrics(run_dir)
            except (UnicodeDecodeError, ValueError) as e:
                reason = str(e).splitlines()[0][:120]
                print(f"warning: {metrics_file}: not a JSON metrics file ({reason}); left out of the table. Fix: "
                      f"restore it from a backup, or evaluate the run again (s2s-eval)", file=sys.stderr)
                continue
            if not isinstance(metrics, dict):
                print(f"warning: {metrics_file}: not a JSON object of metrics; left out of the table", file=sys.stderr)
                continue
            if metrics:
                runs.append(Run(run_dir, parse_overrides(OmegaConf.to_container(OmegaConf.load(overrides_file))), metrics))
    runs = sorted(runs, key=lambda run: str(run.path))
    name_by_folder(runs)
    return runs


def name_by_folder(runs: Sequence[Run]) -> None:
    """Name each local run by its folder relative to the folder that holds them all, so that runs of two multiruns
    read ``2026-11-21_10-00-00/0``, ``2026-11-21_11-30-00/0`` rather than ``0``, ``0``; a lone run keeps its folder's
    name. Runs of W&B (``wandb://...``) are left as they are."""
    folders = [Path(run.path).resolve() for run in runs if isinstance(run.path, Path)]
    if len(folders) < 2:
        return
    common = Path(os.path.commonpath(folders))
    for run in runs:
        if isinstance(run.path, Path):
            run.name = Path(run.path).resolve().relative_to(common).as_posix()


def wandb_runs(source: str, filters: Mapping[str, Any] | None = None, api: Any = None) -> list[Run]:
    """The runs of the W&B project ``wandb://ENTITY/PROJECT`` (or ``wandb://PROJECT``), oldest first, read through
    the public API (``api``: a ``wandb.Api``, made here by default).

    A run's overrides are its config's ``hydra_overrides`` (stored by training); for a run without them (logged by
    something else), every config key, flattened (``model.dropout``). Its metrics are its summary.

    Raises:
        ValueError: ``source`` names no project.
    """
    project_path = source[len(WANDB_SCHEME) :].strip("/") if source.startswith(WANDB_SCHEME) else source
    if not project_path or project_path.count("/") > 1:
        raise ValueError(f"{source!r}: expected wandb://ENTITY/PROJECT or wandb://PROJECT")
    if api is None:
        import wandb

        api = wandb.Api()
    runs = []
    for run in api.runs(project_path, filters=dict(filters or {}), order="+created_at"):
        config = dict(run.config)
        if "hydra_overrides" in config:
            overrides = parse_overrides(config["hydra_overrides"] or [])
        else:
            overrides = {k: str(v) for k, v in _flatten(config).items() if not k.startswith("_")}
        summary = getattr(run.summary, "_json_dict", None) or dict(run.summary)
        metrics = {k: v for k, v in summary.items() if not k.startswith("_") and not isinstance(v, dict)}
        runs.append(Run(f"{WANDB_SCHEME}{'/'.join(run.path)}", overrides, metrics, name=run.id))
    return runs


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


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
        cells = [run.name, *(run.overrides.get(k, "default") for k in keys)]
        cells += [_format(run.metrics.get(m)) for m in metrics]
        table.add_row(*cells)
    return table


def _format(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


def plot_gradient_tables(paths: Sequence[str | Path], png: Path) -> int:
    """Plot every ``gradients.csv`` (written by ``s2s-gradients``) at or below ``paths`` into one PNG, one line per
    file named by its folder relative to the folder above them all; returns how many were plotted.

    Raises:
        ValueError: no ``gradients.csv`` below the paths, or one without the columns s2s-gradients writes.
    """
    from .plots.gradients import plot_gradient_profiles  # matplotlib only when plotting

    files = sorted({f.resolve() for root in paths for f in Path(root).rglob("gradients.csv")})
    if not files:
        raise ValueError(f"no gradients.csv (written by s2s-gradients) in {', '.join(map(str, paths))}")
    common = Path(os.path.commonpath([f.parent for f in files])) if len(files) > 1 else files[0].parent.parent
    curves = {}
    for f in files:
        with open(f, newline="", encoding="utf-8") as table:
            rows = list(csv.DictReader(table))
        if not rows or not {"offset", "from_end", "from_start"} <= set(rows[0]):
            raise ValueError(f"{f}: not a table of s2s-gradients (columns offset, sentences, from_end, from_start)")
        curves[f.parent.relative_to(common).as_posix()] = [
            {k: float(v) for k, v in row.items() if v not in ("", None)} for row in rows
        ]
    plot_gradient_profiles(curves, png, title="gradient by source position")
    return len(curves)


def curve_names(runs: Sequence[Run]) -> list[str]:
    """A name per run for a plot's legend: the overrides that differ between the runs (``model/attention=none``), or,
    where those do not tell the runs apart (s2s-eval runs that differ only in ``ckpt_path``, a checkpoint's path too
    long for a legend), the run's folder name (:func:`name_by_folder`)."""
    keys = [k for k in differing_keys(runs) if k != "ckpt_path"]
    names = [" ".join(f"{k}={run.overrides[k]}" for k in keys if k in run.overrides) for run in runs]
    if all(names) and len(set(names)) == len(names):
        return names
    return [run.name for run in runs]


def plot_metric(runs: Sequence[Run], metric: str, label_key: str | None, path: Path) -> None:
    """Bar chart of ``metric`` per run, labelled by the override of ``label_key`` (else the run's name)."""
    from matplotlib.figure import Figure

    labels = [run.overrides.get(label_key, "default") if label_key else run.name for run in runs]
    values = [float(run.metrics.get(metric, float("nan"))) for run in runs]
    fig = Figure(figsize=(max(4.0, 0.8 * len(runs) + 1.5), 3.5))
    ax = fig.add_subplot()
    ax.bar(range(len(runs)), values)
    ax.set_xticks(range(len(runs)), labels=labels, rotation=45, ha="right")
    ax.set_ylabel(metric)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="s2s-compare", description=__doc__.splitlines()[0])
    parser.add_argument(
        "paths", nargs="+", help="run folders or folders above them (e.g. a multirun folder), or wandb://ENTITY/PROJECT"
    )
    parser.add_argument("--metrics", default=",".join(DEFAULT_METRICS), help="comma-separated metric names")
    parser.add_argument("--plot", type=Path, help="save a bar chart of the first metric to this PNG")
    parser.add_argument("--label", help="overridden key that labels the bars, e.g. model/attention")
    parser.add_argument("--plot-length", type=Path, help="save BLEU by source length (one line per run) to this PNG")
    parser.add_argument(
        "--plot-gradients", type=Path,
        help="save the gradient by source position of every s2s-gradients output (gradients.csv) below the paths, one "
        "line per folder, to this PNG",
    )
    parser.add_argument("--wandb-project", help="with --plot-length: also log the plot to this W&B project as an image")
    parser.add_argument("--filters", type=json.loads, help="W&B run filter (JSON, MongoDB-style) for wandb:// sources")
    args = parser.parse_args(argv)
    local = [p for p in args.paths if not p.startswith(WANDB_SCHEME)]
    inputs = [(f"the metrics of {f.parent}", f) for root in local for f in Path(root).rglob("metrics.json")]
    inputs += [(f"the CSV log {f}", f) for root in local for f in Path(root).rglob("metrics.csv")]
    inputs += [(f"the gradient table {f}", f) for root in local for f in Path(root).rglob("gradients.csv")]
    for option, path in (("--plot", args.plot), ("--plot-length", args.plot_length), ("--plot-gradients", args.plot_gradients)):
        if path:
            try:
                check_output_path(option, path, inputs=inputs)
            except ConfigError as e:
                parser.error(str(e))
    if args.plot_gradients:
        try:
            written = plot_gradient_tables(local, args.plot_gradients)
        except ValueError as e:
            parser.error(str(e))
        print(f"gradient plot of {written} models written to {args.plot_gradients}")
    runs = find_runs(local)
    if not runs and args.plot_gradients and not (args.plot or args.plot_length):
        return 0  # only gradient tables were asked for
    for source in (p for p in args.paths if p.startswith(WANDB_SCHEME)):
        try:
            runs += wandb_runs(source, args.filters)
        except ValueError as e:
            parser.error(str(e))
        except Exception as e:  # wandb's CommError, AuthenticationError, UsageError: no network or no API key
            parser.error(
                f"cannot read {source} from W&B ({type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}). "
                f"Fix: `wandb login` or set WANDB_API_KEY, check the network and the entity/project; runs logged "
                f"offline must be uploaded first (`wandb sync <run dir>/wandb/offline-run-*`), or compare the local "
                f"run folders instead"
            )
    if not runs:
        parser.error(f"no runs (folders with .hydra/overrides.yaml and metrics.json or CSV logs) in {', '.join(args.paths)}")
    metrics = [m for m in args.metrics.split(",") if m]
    console = Console()
    if not console.is_terminal:
        console = Console(width=240)  # a file or pipe gets the whole table, not one squeezed to 80 columns
    console.print(comparison_table(runs, metrics))
    if args.plot:
        plot_metric(runs, metrics[0], args.label, args.plot)
        print(f"plot written to {args.plot}")
    if args.plot_length:
        from .plots.length import log_plot_to_wandb, plot_bleu_by_length  # matplotlib only when plotting

        try:
            plot_bleu_by_length({name: run.metrics for name, run in zip(curve_names(runs), runs)}, args.plot_length)
        except ValueError as e:
            parser.error(str(e))
        print(f"length plot written to {args.plot_length}")
        if args.wandb_project:
            log_plot_to_wandb(args.plot_length, args.wandb_project)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
