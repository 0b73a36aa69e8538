"""Logger set-up (names, groups, tags and hyperparameters of a run from its Hydra job), and the image, text-table and
run-summary logging that Lightning's loggers do not share one API for: W&B, TensorBoard, MLflow and CSV."""

from __future__ import annotations

import csv
import logging
import netrc
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from lightning.pytorch.loggers import CSVLogger, Logger, MLFlowLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from matplotlib.figure import Figure
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from ..errors import ConfigError
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


# Overrides that say where a run reads and writes (``logger``: where its metrics go), not what it is: left out of
# run names and hyperparameters.
PLACE_OVERRIDES = ("paths.", "hydra.", "data.train_", "data.val_", "data.test_", "ckpt_path", "logger")


def run_overrides() -> list[str]:
    """The command-line overrides of this Hydra job that change what the run is (``model/attention=dot``), without
    those that only say where it reads or writes (:data:`PLACE_OVERRIDES`); empty outside Hydra."""
    return [o for o in job_overrides() if not o.lstrip("+~").startswith(PLACE_OVERRIDES)]


def run_name_from_overrides(max_length: int = 128) -> str | None:
    """The command-line overrides of this Hydra job as a run name (``model/attention=dot,trainer.max_steps=600``), so
    that the runs of a multirun are told apart by what they change; None outside Hydra or without overrides."""
    return ",".join(run_overrides())[:max_length] or None


def run_folder_name_from_overrides(max_length: int = 128) -> str | None:
    """:func:`run_name_from_overrides` as one folder name, ``/`` made ``.`` (``model.attention=dot``): the name of
    the TensorBoard run folder, which TensorBoard shows as the run's name."""
    name = run_name_from_overrides(max_length)
    return name.replace("/", ".") if name else None


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


# The config groups whose choice, and the resolved config keys, that describe a run in TensorBoard's HPARAMS tab
# besides the job's overrides: the architecture and the training budget.
HPARAM_GROUPS = ("data", "model/encoder", "model/attention", "model/decoder", "model/teacher_forcing", "model/search",
                 "model/scheduler", "trainer", "experiment")
HPARAM_KEYS = ("model.embedding_size", "model.encoder.rnn_type", "model.encoder.hidden_size", "model.encoder.num_layers",
               "model.encoder.bidirectional", "model.decoder.hidden_size", "model.dropout", "model.label_smoothing",
               "model.optimizer.lr", "data.batch_size", "trainer.max_steps", "seed")
# Overrides of how a run logs and shows progress, not what it trains: not hyperparameters.
NOT_HPARAMS = ("logger", "callbacks", "debug", "trainer.enable_", "trainer.log_every_n_steps")


def run_hparams(cfg: DictConfig) -> dict[str, bool | int | float | str]:
    """What a run's hyperparameters are in a comparison of runs (TensorBoard's HPARAMS table and parallel
    coordinates): the chosen option of each group of :data:`HPARAM_GROUPS` (``model/attention: general``), the
    resolved values of :data:`HPARAM_KEYS`, and every key the job overrides (:func:`run_overrides`, less
    :data:`NOT_HPARAMS`) with its resolved value, so the swept keys of a multirun are columns. Values are booleans,
    numbers or strings (anything else is written as YAML, e.g. ``null``, ``[10, 20]``)."""
    hparams: dict[str, Any] = {}
    try:
        choices = HydraConfig.get().runtime.choices
    except ValueError:  # not running under Hydra: no choices, no overrides
        choices = {}
    for group in HPARAM_GROUPS:
        if choices.get(group):
            hparams[group] = choices[group]
    keys = list(HPARAM_KEYS)
    for override in OverridesParser.create().parse_overrides(run_overrides()):
        key = override.key_or_group
        if key.startswith(NOT_HPARAMS):
            continue
        if key in choices or override.is_delete():
            hparams[key] = choices.get(key) or override.get_value_element_as_str()
        elif key not in keys:
            keys.append(key)
    for key in keys:
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if value is not None or key not in HPARAM_KEYS:  # a main key the config lacks is left out
            hparams[key] = _hparam_value(value)
    return hparams


def _hparam_value(value: Any) -> bool | int | float | str:
    """A config value as TensorBoard and MLflow take it: booleans, numbers and strings as they are, else YAML flow."""
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    return yaml.safe_dump(value, default_flow_style=True, width=1_000_000).strip().removesuffix("...").strip()


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

    A TensorBoard logger whose ``version`` is null writes into a folder named by the job's overrides
    (:func:`run_folder_name_from_overrides`, ``tensorboard/model.attention=general``), which TensorBoard shows as the
    run's name (``version_0`` without overrides). An MLflow logger whose ``run_name`` is null is named by the
    overrides, whose ``experiment_name`` is null is the multirun or the experiment (as a W&B group) or else
    ``seq2seq-lit``; its tags get the chosen options (``attention: general``) and the overrides
    (``hydra_overrides``); its experiment is created here (:func:`mlflow_experiment`).

    Raises:
        ConfigError: an MLflow logger is configured but mlflow is not installed.
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
        if logger_cfg._target_.endswith("TensorBoardLogger") and logger_cfg.get("version") is None:
            with open_dict(logger_cfg):
                logger_cfg.version = run_folder_name_from_overrides()
        if logger_cfg._target_.endswith("MLFlowLogger"):
            configure_mlflow(name, logger_cfg)
        if "save_dir" in logger_cfg:
            Path(logger_cfg.save_dir).mkdir(parents=True, exist_ok=True)
        if logger_cfg._target_.endswith("WandbLogger") and not logger_cfg.get("offline"):
            loggers.append(start_wandb(name, logger_cfg))
        else:
            loggers.append(hydra.utils.instantiate(logger_cfg))
    return loggers


def configure_mlflow(name: str, logger_cfg: DictConfig) -> None:
    """Fill in an MLflow logger's null ``run_name`` and ``experiment_name`` and its ``tags`` from the Hydra job (see
    :func:`instantiate_loggers`), and create its experiment.

    Raises:
        ConfigError: mlflow is not installed.
    """
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"logger.{name}: MLflow logging needs the mlflow package, which is not installed. Fix: pip install "
            f"'seq2seq-lit[mlflow]' (or pip install mlflow), or choose another logger (logger=tensorboard)"
        ) from None
    with open_dict(logger_cfg):
        if logger_cfg.get("run_name") is None:
            logger_cfg.run_name = run_name_from_overrides()
        if logger_cfg.get("experiment_name") is None:
            logger_cfg.experiment_name = run_group_from_hydra() or "seq2seq-lit"
        tags = {tag.split(":", 1)[0]: tag.split(":", 1)[1] for tag in run_tags_from_hydra() if ":" in tag}
        tags["hydra_overrides"] = ",".join(job_overrides())[:5000]  # MLflow's limit on a tag value is 8,000
        logger_cfg.tags = {**tags, **(logger_cfg.get("tags") or {})}
    tracking_uri = logger_cfg.get("tracking_uri")
    if tracking_uri and tracking_uri.startswith("sqlite:///"):  # SQLite makes the file, not its folder
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow_experiment(tracking_uri, logger_cfg.experiment_name, logger_cfg.get("artifact_location"))


def mlflow_experiment(tracking_uri: str | None, experiment_name: str, artifact_location: str | None = None) -> str:
    """The id of the MLflow experiment ``experiment_name`` in the store ``tracking_uri``, created if it does not exist.

    The trials of a sweep that run at once all log into the sweep's experiment; the first creates it, and the others,
    whose creation then fails, find it (``MLFlowLogger`` itself would fail on that race).
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(experiment_name, artifact_location=artifact_location)
    except MlflowException:
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is None:
            raise
        return experiment.experiment_id


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
    """Log a matplotlib figure as an image to every logger: W&B image, TensorBoard figure, MLflow artifact
    ``<key>/step<step>.png``, PNG file beside a CSV log."""
    for logger in loggers:
        if isinstance(logger, MLFlowLogger):
            logger.experiment.log_figure(logger.run_id, fig, f"{key}/step{step:07d}.png")
        elif isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[figure_to_array(fig)], step=step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, figure_to_array(fig), global_step=step, dataformats="HWC")
        elif isinstance(logger, CSVLogger):
            path = Path(logger.log_dir) / "images" / f"{key.replace('/', '_')}_step{step}.png"
            with atomic_open(path, "wb", make_parents=True) as f:
                fig.savefig(f, format="png")


def log_text_table(loggers: list[Logger], key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], step: int) -> None:
    """Log a table of text to every logger: a ``wandb.Table``, a Markdown table in TensorBoard's text tab, an MLflow
    table artifact ``<key>/step<step>.json`` (``mlflow.log_table``: the UI shows it, and compares it across runs), and
    a tab-separated file ``tables/<key>_step<step>.tsv`` beside a CSV log."""
    for logger in loggers:
        if isinstance(logger, MLFlowLogger):
            data = {column: [row[i] for row in rows] for i, column in enumerate(columns)}
            logger.experiment.log_table(logger.run_id, data, f"{key}/step{step:07d}.json")
        elif isinstance(logger, WandbLogger):
            logger.log_table(key=key, columns=list(columns), data=[list(row) for row in rows], step=step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_text(key, markdown_table(columns, rows), global_step=step)
        elif isinstance(logger, CSVLogger):
            path = Path(logger.log_dir) / "tables" / f"{key.replace('/', '_')}_step{step}.tsv"
            with atomic_open(path, "w", make_parents=True, newline="", encoding="utf-8") as f:
                writer = csv.writer(f, delimiter="\t", lineterminator="\n")
                writer.writerow(columns)
                writer.writerows(rows)


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown (GitHub) table of ``rows`` under ``columns``, without a final newline."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_markdown_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _markdown_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


@rank_zero_only
def log_summary(loggers: list[Logger], values: Mapping[str, Any], hparams: Mapping[str, Any] | None = None) -> None:
    """Record a run's final values (test metrics, the sacreBLEU signature, the best checkpoint) after testing.

    - W&B: the run summary (what the runs table and ``s2s-compare wandb://...`` show);
    - TensorBoard: an HPARAMS session of ``hparams`` (:func:`run_hparams`; :func:`write_tensorboard_session`), and
      the texts (signature, best checkpoint) under TEXT;
    - MLflow: the numeric values as metrics, the texts as tags (the config went in as params at the start);
    - CSV: ``hparams.yaml``.
    """
    values = {k: v for k, v in values.items() if v is not None}
    numbers = {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    texts = {k: str(v) for k, v in values.items() if k not in numbers}
    step = int(values.get("global_step", 0))
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.summary.update(values)
        elif isinstance(logger, TensorBoardLogger):
            write_tensorboard_session(logger.log_dir, hparams or {}, texts, step)
        elif isinstance(logger, MLFlowLogger):
            logger.log_metrics(numbers, step=step)
            for key, text in texts.items():
                logger.experiment.set_tag(logger.run_id, key, text[:5000])
        else:
            logger.log_hyperparams(dict(values))


def write_tensorboard_session(log_dir: str | Path, hparams: Mapping[str, Any], texts: Mapping[str, str], step: int) -> None:
    """Make the TensorBoard run in ``log_dir`` a session of TensorBoard's HPARAMS tab with ``hparams`` (booleans,
    numbers, strings), once the run has ended; write ``texts`` under TEXT at ``step``.

    Only the session's start and end (status success) are written, no experiment summary: TensorBoard then builds
    the experiment from every session under its ``--logdir``, with each hyperparameter's values across the runs, and
    lists first the hyperparameters whose values differ (a sweep's swept keys); the metrics are the run's scalars
    (``test/bleu``, ``test/chrf``, ``val/bleu_best``, ...), their last values. Lightning's ``log_hyperparams`` at the
    start writes no session (it has no metrics then, and ``default_hp_metric`` is off: Lightning #2971, #12494), and
    one written with an experiment summary by every run would show only the first run's columns, alphabetically.
    """
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams as hparams_summaries

    _, session_start, session_end = hparams_summaries(dict(hparams), {})
    with SummaryWriter(log_dir=str(log_dir)) as writer:  # a new event file beside the run's own: the same run
        writer.file_writer.add_summary(session_start, step)
        writer.file_writer.add_summary(session_end, step)
        for key, text in texts.items():
            writer.add_text(key, text, global_step=step)
