"""Train, then test the best checkpoint: ``python -m seq2seq_lit.train [overrides]`` (console script ``s2s-train``).

Builds the data module, the LightningModule, callbacks, loggers and trainer from the Hydra config (``conf/train.yaml``),
fits, tests the best checkpoint (by ``val/bleu``), prints a summary, writes ``metrics.json`` into the run's output
folder, and returns the metrics so that a Hydra sweeper can optimize ``val/bleu_best``.

``ckpt_path=PATH`` resumes training from a checkpoint (weights, optimizer, LR scheduler, step, data order, random
state); ``ckpt_path=last`` is ``checkpoints/last.ckpt`` of this run's folder, so
``python -m seq2seq_lit.train <the run's overrides> ckpt_path=last hydra.run.dir=<the run's folder>`` resumes an
interrupted run in place.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from .build import build_data, build_module, instantiate_callbacks, prepare_run
from .callbacks import FollowRunFolder, ResumeCheckpoint, TrainingTokens
from .callbacks.resume import wait_for_launched_ranks
from .data import Tokenizers
from .errors import ConfigError, DataError
from .inference.checkpoints import read_checkpoint, state_dict_mismatch
from .lit_module import TOKENIZERS_KEY
from .metrics import bleu_signature
from .preflight import check_options, check_run
from .utils.atomic import atomic_write_text
from .utils.entry import CONFIG_PATH, RunInterrupted, exit_2_on_config_errors, run_entry_point
from .utils.loggers import finish_loggers, instantiate_loggers, log_summary, run_hparams
from .utils.output_guard import check_run_dir
from .utils.summary import print_summary

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit and test as configured; returns the metrics also written to ``metrics.json``.

    Options, files, the output folder and disk space are checked before the first step (:mod:`seq2seq_lit.preflight`).
    """
    check_options(cfg)
    prepare_run(cfg)

    callbacks = [*instantiate_callbacks(cfg.get("callbacks")), TrainingTokens(), FollowRunFolder()]
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), cfg, callbacks)
    check_run_dir("hydra.run.dir", cfg.paths.output_dir, ckpt_path)
    checkpoint = read_resume_checkpoint(ckpt_path) if ckpt_path else None

    log.info("Data: %s", cfg.data._target_)
    # resuming: the checkpoint's tokenizers, since the weights were trained on their pieces
    tokenizers = Tokenizers.from_state_dict(checkpoint[TOKENIZERS_KEY]) if checkpoint is not None else None
    datamodule = build_data(cfg.data, tokenizers)

    model = build_module(cfg.model, datamodule)
    if checkpoint is not None and (mismatch := state_dict_mismatch(model.state_dict(), checkpoint["state_dict"])):
        raise ConfigError(
            f"ckpt_path={ckpt_path}: the checkpoint's weights do not fit the configured model ({mismatch}). Fix: "
            f"resume with the model settings of the run that wrote it (its .hydra/overrides.yaml)"
        )
    if checkpoint is not None and (changed := training_state_mismatch(checkpoint.get("hyper_parameters") or {}, cfg.model)):
        raise ConfigError(
            f"ckpt_path={ckpt_path}: the checkpoint was trained with {changed}; its optimizer and LR-schedule states "
            f"cannot be loaded into another one. Fix: resume with the optimizer and schedule of the run that wrote it "
            f"(its .hydra/overrides.yaml)"
        )
    del checkpoint  # Lightning reads it again, with the optimizer and loop states
    check_run(cfg, datamodule, model, callbacks)
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for logger in loggers:
        logger.log_hyperparams({**OmegaConf.to_container(cfg, resolve=True), "data_filtered": datamodule.num_filtered})

    try:
        metrics = _fit_and_test(cfg, trainer, model, datamodule, loggers, ckpt_path)
    finally:
        finish_loggers(loggers)
    if trainer.is_global_zero:
        print_summary(metrics, Path(cfg.paths.output_dir))
    return metrics


def _fit_and_test(
    cfg: DictConfig,
    trainer: L.Trainer,
    model: L.LightningModule,
    datamodule: L.LightningDataModule,
    loggers: list[Logger],
    ckpt_path: Path | None = None,
) -> dict[str, Any]:
    """Fit (unless ``cfg.train`` is false; resuming from ``ckpt_path`` if given), test the best checkpoint (unless
    ``cfg.test`` is false), write ``metrics.json`` (rank zero) and put the final metrics and the sacreBLEU signature
    into the loggers' run summary, with the run's hyperparameters (:func:`~seq2seq_lit.utils.loggers.run_hparams`)
    for TensorBoard's HPARAMS tab."""
    metrics: dict[str, Any] = {}
    if cfg.get("train", True):
        start = time.perf_counter()
        with _sigterm_exits_nonzero("before training started (no checkpoint)"), _launched_ranks_end_first():
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        metrics["train_seconds"] = round(time.perf_counter() - start, 1)
        tokens = next(c for c in trainer.callbacks if isinstance(c, TrainingTokens)).total(trainer)
        metrics["train_tokens_per_second"] = round(tokens / max(metrics["train_seconds"], 1e-9), 1)
        metrics.update(_floats(trainer.callback_metrics))

    if cfg.get("test", True):
        best = next((c.best_model_path for c in trainer.callbacks if isinstance(c, ModelCheckpoint) and c.monitor), "")
        if not best:
            log.warning("No best checkpoint found: testing the current weights")
        with _sigterm_exits_nonzero("while testing"):
            trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
        metrics.update(_floats(trainer.callback_metrics))
        metrics["best_model_path"] = best

    metrics["global_step"] = trainer.global_step
    metrics["sacrebleu_signature"] = bleu_signature()
    if trainer.is_global_zero:
        output_dir = Path(cfg.paths.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(output_dir / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    final = ("test/", "val/bleu_best", "sacrebleu_signature", "best_model_path", "global_step", "train_")
    log_summary(loggers, {k: v for k, v in metrics.items() if k.startswith(final)}, hparams=run_hparams(cfg))
    return metrics


@contextmanager
def _sigterm_exits_nonzero(when: str) -> Iterator[None]:
    """Lightning ends a stage on SIGTERM with ``SIGTERMException``, a ``SystemExit`` with status 0; make it a
    :class:`RunInterrupted` (status 143). During training :class:`ResumeCheckpoint` handles SIGTERM itself."""
    try:
        yield
    except SIGTERMException:
        raise RunInterrupted(f"SIGTERM received {when}", signal.SIGTERM) from None


@contextmanager
def _launched_ranks_end_first() -> Iterator[None]:
    """On a signal, the ranks this process launched (DDP) have stopped with it: wait until they have exited, so that
    this process ends last and its status (143) is the run's."""
    try:
        yield
    except RunInterrupted:
        wait_for_launched_ranks()
        raise


def resolve_ckpt_path(ckpt_path: str | None, cfg: DictConfig, callbacks: list[L.Callback]) -> Path | None:
    """The checkpoint to resume from: None, a path, or for "last" the :class:`ResumeCheckpoint`'s file of this run
    (``<paths.output_dir>/checkpoints/last.ckpt`` by default).

    Raises:
        ConfigError: the file does not exist (the message says how to point at the run to resume).
    """
    if not ckpt_path:
        return None
    if ckpt_path == "last":
        resume = next((c for c in callbacks if isinstance(c, ResumeCheckpoint)), None)
        path = resume.path if resume else Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
        if not path.is_file():
            raise ConfigError(
                f"ckpt_path=last: {path} does not exist. Fix: add hydra.run.dir=<folder of the run to resume> (the "
                f"folder that holds checkpoints/last.ckpt), or pass ckpt_path=PATH"
            )
        return path
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise ConfigError(f"ckpt_path={ckpt_path}: no such file. Fix: pass a .ckpt written by training, or ckpt_path=last")
    return path


def training_state_mismatch(saved: dict[str, Any], model_cfg: DictConfig) -> str | None:
    """What differs between the optimizer and LR schedule a checkpoint was trained with (its ``hyper_parameters``)
    and those of ``model_cfg`` in a way that its saved states cannot be loaded (another optimizer class, another
    schedule, a warmup added or removed); None if they fit."""

    def shape(node: Any) -> tuple[Any, bool]:
        node = node or {}
        return node.get("_target_"), bool(node.get("warmup_steps"))

    for key in ("optimizer", "scheduler"):
        if key not in saved:
            continue
        (was, was_warm), (now, now_warm) = shape(saved[key]), shape(model_cfg.get(key))
        if was != now:
            return f"model.{key}._target_={was}, and this run configures {now}"
        if key == "scheduler" and was_warm != now_warm:
            return (
                f"model.scheduler.warmup_steps={saved[key].get('warmup_steps')}, and this run configures "
                f"{model_cfg.scheduler.get('warmup_steps')} (a warmup adds a scheduler)"
            )
    return None


def read_resume_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint at ``path``, read weights-only (no pickled code runs), checked to be a training checkpoint.

    Raises:
        DataError: not a seq2seq-lit checkpoint, one with pickled code, or one without the training state (e.g. an
            averaged checkpoint).
    """
    checkpoint = read_checkpoint(path)
    if missing := [key for key in ("optimizer_states", "loops") if key not in checkpoint]:
        raise DataError(
            f"{path}: an inference checkpoint (no {', '.join(missing)}, e.g. an averaged one); it cannot resume "
            f"training. Fix: resume from checkpoints/last.ckpt of the run (ckpt_path=last)"
        )
    return checkpoint


def _floats(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in metrics.items()}


@exit_2_on_config_errors
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train.yaml")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns ``cfg.optimized_metric`` for sweepers."""
    metrics = run_entry_point(train, cfg)
    return metrics.get(cfg.get("optimized_metric")) if cfg.get("optimized_metric") else None


if __name__ == "__main__":
    main()
