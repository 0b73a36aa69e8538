"""Logger set-up, and the image, text-table and run-summary logging that Lightning's loggers do not share one API
for."""

from __future__ import annotations

import csv
import logging
import netrc
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from matplotlib.figure import Figure
from omegaconf import DictConfig, open_dict

from ..plots.attention import figure_to_array
from .atomic import atomic_open

log = logging.getLogger(__name__)

WANDB_INIT_TIMEOUT = 30.0
"""Seconds an online W&B run may take to start before the run falls back to offline (unless ``WANDB_INIT_TIMEOUT``
or the logger's ``settings`` say otherwise; wandb's own default is 90)."""


def wandb_api_key_available() -> bool:
    """Whether W&B has credentials: ``WANDB_API_KEY`` or an ``api.wandb.ai`` entry in ``~/.netrc`` (``wandb login``)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def run_name_from_overrides(max_length: int = 128) -> str | None:
    """The command-line overrides of this Hydra job as a run name (``model/attention=dot,trainer.max_steps=600``), so
    that the runs of a multirun are told apart by what they change; None outside Hydra or without overrides."""
    try:
        overrides = HydraConfig.get().overrides.task
    except ValueError:  # not running under Hydra
        return None
    kept = [o for o in overrides if not o.lstrip("+~").startswith(("paths.", "hydra.", "data.train_", "data.val_", "data.test_"))]
    return ",".join(kept)[:max_length] or None


# Config groups whose choice becomes a W&B tag ("attention:general"), so that runs can be filtered by them.
TAGGED_GROUPS = ("experiment", "model/attention", "model/decoder", "model/teacher_forcing", "model/search", "trainer")


def job_overrides() -> list[str]:
    """The command-line overrides of this Hydra job (empty outside Hydra)."""
    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:  # not running under Hydra
        return []


def run_group_from_hydra() -> str | None:
    """A W&B group for this job: ``<job name>/<multirun folder name>`` (``train/2026-11-21_10-00-00``) for every job
    of a multirun, so a sweep's runs are grouped together; else the experiment (``experiment=luong2015``); else None."""
    try:
        hydra_cfg = HydraConfig.get()
    except ValueError:
        return None
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return f"{hydra_cfg.job.name}/{Path(hydra_cfg.sweep.dir).name}"[:128]
    return hydra_cfg.runtime.choices.get("experiment") or None


def run_tags_from_hydra(tags: Sequence[str] | None = None) -> list[str]:
    """``tags`` (the config's ``tags``) plus ``group:choice`` for the chosen options of :data:`TAGGED_GROUPS`, e.g.
    ``attention:general``; W&B tags are at most 64 characters."""
    result = list(tags or [])
    try:
        choices = HydraConfig.get().runtime.choices
    except ValueError:
        return result
    for group in TAGGED_GROUPS:
        choice = choices.get(group)
        if choice:
            tag = f"{group.rsplit('/', 1)[-1]}:{choice}"[:64]
            if tag not in result:
                result.append(tag)
    return result


def finish_loggers(loggers: list[Logger]) -> None:
    """Close the W&B run, so that the next job of a Hydra multirun starts its own run instead of resuming this one."""
    if any(isinstance(logger, WandbLogger) for logger in loggers):
        import wandb

        wandb.finish()


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    """Instantiate every logger under ``cfg`` (a mapping name -> logger config).

    A W&B logger whose ``offline`` is null runs offline when no API key is found (or ``WANDB_MODE=offline``) and
    online otherwise; offline runs are synced later with ``wandb sync``. Its ``name``, when null, is made of the
    job's command-line overrides (:func:`run_name_from_overrides`); its ``group``, when null or empty, is the
    multirun or the experiment (:func:`run_group_from_hydra`); its ``tags`` get the chosen config options
    (:func:`run_tags_from_hydra`); and the overrides go into the run's config as ``hydra_overrides`` (what
    ``s2s-compare wandb://...`` tabulates). An online W&B run is started here, and falls back to offline if it cannot
    start (:func:`start_wandb`).
    """
    loggers: list[Logger] = []
    for name, logger_cfg in (cfg or {}).items():
        if not isinstance(logger_cfg, DictConfig) or "_target_" not in logger_cfg:
            continue
        if logger_cfg._target_.endswith("WandbLogger") and logger_cfg.get("offline") is None:
            offline = os.environ.get("WANDB_MODE") in ("offline", "disabled") or not wandb_api_key_available()
            with open_dict(logger_cfg):
                logger_cfg.offline = offline
            log.info("W&B logger %r runs %s", name, "offline (no API key found; sync later with `wandb sync`)" if offline else "online")
        if logger_cfg._target_.endswith("WandbLogger"):
            with open_dict(logger_cfg):
                if logger_cfg.get("name") is None:
                    logger_cfg.name = run_name_from_overrides()
                if not logger_cfg.get("group"):
                    logger_cfg.group = run_group_from_hydra()
                logger_cfg.tags = run_tags_from_hydra(logger_cfg.get("tags"))
                if "config" not in logger_cfg:
                    logger_cfg.config = {"hydra_overrides": job_overrides()}
                logger_cfg._convert_ = "all"  # wandb.init takes plain lists and dicts, not OmegaConf containers
        if "save_dir" in logger_cfg:
            Path(logger_cfg.save_dir).mkdir(parents=True, exist_ok=True)
        if logger_cfg._target_.endswith("WandbLogger") and not logger_cfg.get("offline"):
            loggers.append(start_wandb(name, logger_cfg))
        else:
            loggers.append(hydra.utils.instantiate(logger_cfg))
    return loggers


def start_wandb(name: str, logger_cfg: DictConfig) -> WandbLogger:
    """An online W&B logger whose run has started; if it cannot start (no network, server unreachable, a bad API key
    or setting), an offline logger instead, with a warning.

    The run starts before anything is logged, so falling back loses nothing: the offline run keeps every metric and
    image in ``<save_dir>/wandb/offline-run-*`` for ``wandb sync``. Unless ``WANDB_INIT_TIMEOUT`` or the logger's
    ``settings`` set it, the start may take :data:`WANDB_INIT_TIMEOUT` seconds.
    """
    import wandb

    kwargs = {}
    if "settings" not in logger_cfg and "WANDB_INIT_TIMEOUT" not in os.environ:
        kwargs["settings"] = wandb.Settings(init_timeout=WANDB_INIT_TIMEOUT)
    logger = hydra.utils.instantiate(logger_cfg, **kwargs)
    try:
        logger.experiment  # wandb.init: signs in and creates the run on the server
        return logger
    except Exception as e:  # wandb raises CommError, AuthenticationError, UsageError, or a settings ValidationError
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        log.warning(
            "W&B logger %r cannot log online (%s: %s); logging offline instead, nothing is lost: upload the run later "
            "with `wandb sync %s/wandb/offline-run-*`. Fix the network, WANDB_API_KEY or WANDB_BASE_URL, or pass "
            "logger.%s.offline=true to skip the attempt",
            name, type(e).__name__, reason, logger_cfg.get("save_dir") or ".", name,
        )
    if wandb.run is not None:
        wandb.finish()
    with open_dict(logger_cfg):
        logger_cfg.offline = True
    # mode="offline" explicitly: wandb keeps the settings it read from the environment (WANDB_MODE=online) at its
    # first init, so the WANDB_MODE that the offline WandbLogger sets would no longer be read.
    return hydra.utils.instantiate(logger_cfg, mode="offline")


def log_figure(loggers: list[Logger], key: str, fig: Figure, step: int) -> None:
    """Log a matplotlib figure as an image to every logger: W&B image, TensorBoard figure, PNG file beside a CSV log."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[figure_to_array(fig)], step=step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, figure_to_array(fig), global_step=step, dataformats="HWC")
        elif isinstance(logger, CSVLogger):
            path = Path(logger.log_dir) / "images" / f"{key.replace('/', '_')}_step{step}.png"
            with atomic_open(path, "wb", make_parents=True) as f:
                fig.savefig(f, format="png")


def log_text_table(loggers: list[Logger], key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], step: int) -> None:
    """Log a table of text to every logger: a ``wandb.Table``, a Markdown table in TensorBoard's text tab, and a
    tab-separated file ``tables/<key>_step<step>.tsv`` beside a CSV log."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_table(key=key, columns=list(columns), data=[list(row) for row in rows], step=step)
        elif isinstance(logger, TensorBoardLogger):
            lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            lines += ["| " + " | ".join(_markdown_cell(v) for v in row) + " |" for row in rows]
            logger.experiment.add_text(key, "\n".join(lines), global_step=step)
        elif isinstance(logger, CSVLogger):
            path = Path(logger.log_dir) / "tables" / f"{key.replace('/', '_')}_step{step}.tsv"
            with atomic_open(path, "w", make_parents=True, newline="", encoding="utf-8") as f:
                writer = csv.writer(f, delimiter="\t", lineterminator="\n")
                writer.writerow(columns)
                writer.writerows(rows)


def _markdown_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


@rank_zero_only
def log_summary(loggers: list[Logger], values: Mapping[str, Any]) -> None:
    """Record a run's final values (test metrics, the sacreBLEU signature, the best checkpoint): in the W&B run
    summary (what the runs table and ``s2s-compare wandb://...`` show), and as hyperparameters elsewhere (TensorBoard's
    HPARAMS tab, ``hparams.yaml`` of a CSV log)."""
    values = {k: v for k, v in values.items() if v is not None}
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.summary.update(values)
        else:
            logger.log_hyperparams(dict(values))
