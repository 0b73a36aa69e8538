"""What a sweep knows about each of its trials, kept in the trial's own folder so that it survives the driver.

A trial's folder is the job folder of the multirun (``<hydra.sweep.dir>/<hydra.sweep.subdir>``). In it:

- ``.hydra/overrides.yaml``: written by Hydra when the trial first started: which trial of the sweep it is;
- ``metrics.json``: written by ``train`` when the trial finished;
- ``checkpoints/last.ckpt``: written while training and on SIGINT/SIGTERM (``ResumeCheckpoint``);
- ``trial.json``: written by :class:`TrialRecorder` (a Hydra callback) when the job ends: its status
  (``finished`` or ``failed``), the error line of a failure, the overrides, the returned metric.

Running the same multirun again with the same ``hydra.sweep.dir`` uses them (:func:`prior_state`): a finished trial
is skipped, an unfinished one with a ``last.ckpt`` resumes from it (``ckpt_path=last``), any other starts anew.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError
from ..utils.atomic import atomic_write_text

log = logging.getLogger(__name__)

RECORD = "trial.json"
RESUME_OVERRIDE = "ckpt_path=last"


class TrialsFailed(SystemExit):
    """Some trials of a sweep failed or were stopped (their errors are in the table printed before): exit status 1,
    or ``code`` (130/143: the sweep was stopped by SIGINT/SIGTERM)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(code)
        self.message = message


@dataclass
class FailedTrial(JobReturn):
    """A failed job whose error was recorded against its trial: status stays ``FAILED``, but reading
    ``return_value`` gives None instead of raising, so that Hydra's sweepers go on with the other trials (the basic
    sweeper raises on the first failed job of a batch; the Optuna sweeper tells the study ``FAIL`` for a None)."""

    @property  # type: ignore[override]
    def return_value(self) -> Any:
        return None

    @return_value.setter
    def return_value(self, value: Any) -> None:
        self._return_value = value


def task_overrides(overrides: Sequence[str]) -> list[str]:
    """A trial's identity: its task overrides without the ``ckpt_path=last`` that a resume adds."""
    return [o for o in overrides if o != RESUME_OVERRIDE]


def prior_state(trial_dir: Path, overrides: Sequence[str]) -> str:
    """``"finished"`` (``metrics.json`` there), ``"resumable"`` (``checkpoints/last.ckpt`` there) or ``"new"``, for
    the trial with ``overrides`` in ``trial_dir``.

    Raises:
        ConfigError: the folder holds another trial (other overrides in its ``.hydra/overrides.yaml``), e.g. a
            different sweep run with the same ``hydra.sweep.dir``; reusing it would mix the two.
    """
    recorded = trial_dir / ".hydra" / "overrides.yaml"
    if not recorded.is_file():
        return "new"
    before = task_overrides([str(o) for o in OmegaConf.load(recorded)])
    if before != task_overrides(overrides):
        raise ConfigError(
            f"{recorded}: this trial folder holds the overrides {before}, not {task_overrides(overrides)}: another "
            f"sweep used the same hydra.sweep.dir. Fix: give this sweep its own hydra.sweep.dir=DIR, or run the "
            f"same command as before to finish that sweep"
        )
    if (trial_dir / "metrics.json").is_file():
        return "finished"
    if (trial_dir / "checkpoints" / "last.ckpt").is_file():
        return "resumable"
    return "new"


def finished_return(trial_dir: Path, overrides: Sequence[str], optimized_metric: str | None) -> JobReturn:
    """The :class:`JobReturn` of a trial finished in an earlier start of the sweep: its metric from ``metrics.json``
    (what ``train`` returned then), so that a sweeper sees it as if it had just run."""
    metrics = json.loads((trial_dir / "metrics.json").read_text())
    ret = JobReturn(overrides=list(overrides), working_dir=str(trial_dir), task_name="train", status=JobStatus.COMPLETED)
    ret.return_value = metrics.get(optimized_metric) if optimized_metric else None
    return ret


def error_line(exc: BaseException) -> str:
    """One line saying why a trial failed: the type and first message line of the innermost cause of ``exc`` (Hydra
    wraps an error raised while instantiating in an ``InstantiationException`` whose own first line names only the
    class), e.g. ``ValueError: dropout probability has to be between 0 and 1, but got 1.5``."""
    seen = {id(exc)}
    while (cause := exc.__cause__ or exc.__context__) is not None and id(cause) not in seen:
        seen.add(id(cause))
        exc = cause
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def write_record(trial_dir: Path, overrides: Sequence[str], status: str, value: Any = None, error: str | None = None) -> None:
    """Write ``trial.json`` into ``trial_dir`` (atomically)."""
    record = {"status": status, "overrides": task_overrides(overrides), "value": value, "error": error}
    trial_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(trial_dir / RECORD, json.dumps(record, indent=2, default=str) + "\n")


def read_records(sweep_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    """``(trial folder name, record)`` of every trial under ``sweep_dir`` that started (has ``.hydra``), in job
    order; a trial without ``trial.json`` (its process was killed) is ``{"status": "stopped"}``."""
    rows = []
    for path in sorted(sweep_dir.iterdir(), key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name)):
        if not (path / ".hydra").is_dir():
            continue
        record_file = path / RECORD
        if record_file.is_file():
            rows.append((path.name, json.loads(record_file.read_text())))
        else:
            rows.append((path.name, {"status": "stopped", "overrides": None, "value": None, "error": "no record (killed?)"}))
    return rows


def format_table(rows: list[tuple[str, dict[str, Any]]], metric: str | None) -> str:
    """A plain-text table of the trials: folder, status, metric, and the error line of a trial that did not finish or
    else the overrides that differ between trials (those all trials share are left out)."""
    header = ("trial", "status", metric or "value", "swept overrides / error")
    known = [r.get("overrides") for _, r in rows if r.get("overrides") is not None]
    shared = set.intersection(*map(set, known)) if len(known) > 1 else set()
    lines = [header]
    for name, record in rows:
        value = record.get("value")
        shown = f"{value:.4f}" if isinstance(value, float) else ("" if value is None else str(value))
        swept = " ".join(o for o in record.get("overrides") or [] if o not in shared)
        detail = swept if record.get("status") == "finished" else f"{swept}: {record.get('error')}"
        lines.append((name, str(record.get("status")), shown, detail or ""))
    widths = [max(len(line[i]) for line in lines) for i in range(3)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line[:3], widths)) + "  " + line[3] for line in lines)


class TrialRecorder(Callback):
    """Hydra callback (``hydra.callbacks.trials`` in ``conf/hydra/default.yaml``).

    ``on_multirun_start`` creates the sweep folder. ``on_job_end`` (where the job ran: the driver for the basic launcher, a Ray worker for ``hydra/launcher=ray``)
    writes the trial's ``trial.json``. ``on_multirun_end`` (the driver) prints the table of every trial of the sweep
    folder, and ends the command with :class:`TrialsFailed` (exit status 1) if any trial failed or did not finish.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # before the sweeper starts: the Optuna study's SQLite file lives in it
        _sweep_dir(config).mkdir(parents=True, exist_ok=True)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.get().mode != RunMode.MULTIRUN:
            return
        trial_dir = Path(HydraConfig.get().runtime.output_dir)
        if job_return.status == JobStatus.COMPLETED:
            value = job_return.return_value
            write_record(trial_dir, job_return.overrides or [], "finished", value if isinstance(value, (int, float)) else None)
        else:
            write_record(trial_dir, job_return.overrides or [], "failed", error=error_line(job_return._return_value))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = _sweep_dir(config)
        if sweep_dir.is_dir() and not report(sweep_dir, config.get("optimized_metric")):
            raise TrialsFailed(f"some trials in {sweep_dir} did not finish")


def _sweep_dir(config: DictConfig) -> Path:
    sweep_dir = Path(str(config.hydra.sweep.dir))
    return sweep_dir if sweep_dir.is_absolute() else Path(str(config.hydra.runtime.cwd)) / sweep_dir


def report(sweep_dir: Path, metric: str | None) -> bool:
    """Print (stderr) and log the table of the trials in ``sweep_dir`` and a summary line; True if all finished."""
    rows = read_records(sweep_dir)
    counts = {s: sum(r["status"] == s for _, r in rows) for s in ("finished", "failed", "stopped")}
    summary = f"{len(rows)} trials in {sweep_dir}: " + ", ".join(f"{n} {s}" for s, n in counts.items())
    if counts["stopped"]:
        summary += " (run the same command again to resume them)"
    print(f"{format_table(rows, metric)}\n{summary}", file=sys.stderr)
    log.info("%s", summary)
    return len(rows) == counts["finished"]


@dataclass
class Trial:
    """One job of a launcher's batch: its number, overrides as given by the sweeper, composed config, folder and
    :func:`prior_state` (with ``ckpt_path=last`` added to ``config`` and ``overrides`` when resumable)."""

    num: int
    overrides: list[str]
    config: DictConfig
    trial_dir: Path
    state: str


def plan_trial(hydra_context: Any, master_config: DictConfig, overrides: Sequence[str], num: int) -> Trial:
    """Compose the config of job ``num`` (as Hydra's launchers do), with an absolute ``hydra.sweep.dir`` (a Ray
    worker on another machine, or in another folder, would resolve a relative one against its own folder), and
    decide from its folder whether it is new, resumable or finished."""
    from omegaconf import open_dict

    overrides = list(overrides)
    config_loader = hydra_context.config_loader
    sweep_config = config_loader.load_sweep_config(master_config, overrides)
    sweep_dir = Path(str(master_config.hydra.sweep.dir))
    if not sweep_dir.is_absolute():
        sweep_dir = Path(str(master_config.hydra.runtime.cwd)) / sweep_dir

    def fix(cfg: DictConfig) -> DictConfig:
        with open_dict(cfg):
            cfg.hydra.sweep.dir = str(sweep_dir)
            # SLURM_JOB_ID or the like, which a local launcher has not: Hydra's own launchers number them so
            cfg.hydra.job.id = f"job_id_for_{num}"
            cfg.hydra.job.num = num
            cfg.hydra.sweep.subdir = str(cfg.hydra.sweep.subdir)
        return cfg

    sweep_config = fix(sweep_config)
    trial_dir = sweep_dir / str(sweep_config.hydra.sweep.subdir)  # resolved here: ${now:...} would differ in a worker
    state = prior_state(trial_dir, overrides)
    if state == "resumable" and RESUME_OVERRIDE not in overrides:
        overrides = [*overrides, RESUME_OVERRIDE]
        sweep_config = fix(config_loader.load_sweep_config(master_config, overrides))
    return Trial(num, overrides, sweep_config, trial_dir, state)


def recorded(ret: JobReturn) -> JobReturn:
    """``ret``, or for a failed job (its error already in its ``trial.json``) the same as a :class:`FailedTrial`."""
    if ret.status != JobStatus.FAILED:
        return ret
    failed = FailedTrial(overrides=ret.overrides, cfg=ret.cfg, hydra_cfg=ret.hydra_cfg, working_dir=ret.working_dir,
                         task_name=ret.task_name, status=ret.status)
    failed._return_value = ret._return_value
    log.error("trial %s failed: %s", ret.working_dir, error_line(ret._return_value))
    return failed
