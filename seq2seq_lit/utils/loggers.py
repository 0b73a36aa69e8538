"""Logger set-up and the image logging that Lightning's loggers do not share one API for."""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger
from matplotlib.figure import Figure
from omegaconf import DictConfig, open_dict

from ..plotting import figure_to_array

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


def finish_loggers(loggers: list[Logger]) -> None:
    """Close the W&B run, so that the next job of a Hydra multirun starts its own run instead of resuming this one."""
    if any(isinstance(logger, WandbLogger) for logger in loggers):
        import wandb

        wandb.finish()


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    """Instantiate every logger under ``cfg`` (a mapping name -> logger config).

    A W&B logger whose ``offline`` is null runs offline when no API key is found (or ``WANDB_MODE=offline``) and
    online otherwise; offline runs are synced later with ``wandb sync``. Its ``name``, when null, is made of the
    job's command-line overrides (:func:`run_name_from_overrides`). An online W&B run is started here, and falls back
    to offline if it cannot start (:func:`start_wandb`).
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
        if logger_cfg._target_.endswith("WandbLogger") and logger_cfg.get("name") is None:
            with open_dict(logger_cfg):
                logger_cfg.name = run_name_from_overrides()
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
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path)
