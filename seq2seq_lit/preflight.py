"""The checks a training run makes before its first step, so that a bad option or file stops it in seconds, not after
hours of training (``s2s-train``, :func:`seq2seq_lit.train.train`).

In order: :func:`check_options` (on the composed config: option names, values and the validation cadence, before
anything is built), then :func:`check_run` (with the data module and model built: every split file, the test split
included, the output folder, free disk space for checkpoints, and the cleaning of orphaned temporary files). Every
failure is a :class:`~seq2seq_lit.errors.ConfigError` or :class:`~seq2seq_lit.errors.DataError` naming the key or the
file and the fix; the entry point turns it into one line and exit status 2.
"""

from __future__ import annotations

import inspect
import logging
import math
import numbers
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf, open_dict

from .errors import ConfigError
from .schedules import AFTER_VALIDATION
from .utils.atomic import remove_orphaned_temporaries

log = logging.getLogger(__name__)

_CONFIG_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")
_CONSUMED_KEYS = {"model.scheduler": ("warmup_steps",)}
"""Keys the project reads itself before instantiating the node (``schedules.lightning_schedulers`` turns
``warmup_steps`` into a second scheduler for targets such as ReduceLROnPlateau that have none)."""
_MIB = 2**20


def check_options(cfg: DictConfig) -> None:
    """Check the option names and values of a training config, and align the validation cadence with the LR
    scheduler (:func:`align_validation_cadence`, which edits ``cfg``).

    Raises:
        ConfigError: a required option not given (``???``); an option that the class it configures does not take
            (e.g. ``+model.new_key=1``); a number of :data:`NUMBERS` of the wrong type, not finite or out of its range
            (:func:`check_numbers`); ``trainer.max_steps`` or ``trainer.max_epochs`` of 0 (nothing to train) or
            below -1; a setting that reads the validation score while validation is off
            (:func:`check_validation_readers`).
    """
    if missing := sorted(OmegaConf.missing_keys(cfg)):
        raise ConfigError(f"{missing[0]}: required, and not given (??? in its config). Fix: pass {missing[0]}=VALUE")
    for key in ("model", "data", "trainer"):
        if isinstance(cfg.get(key), DictConfig):
            check_option_names(cfg[key], key)
    for name, callback in (cfg.get("callbacks") or {}).items():
        if isinstance(callback, DictConfig):
            check_option_names(callback, f"callbacks.{name}")
    check_numbers(cfg)
    if cfg.get("train", True):
        for key in ("max_steps", "max_epochs"):
            value = cfg.trainer.get(key)
            if isinstance(value, int) and (value == 0 or value < -1):
                raise ConfigError(
                    f"trainer.{key}={value}: nothing to train. Fix: pass trainer.{key}=N with N >= 1 (-1: no limit), "
                    f"or train=false to only test a checkpoint"
                )
    check_validation_readers(cfg)
    align_validation_cadence(cfg)


@dataclass(frozen=True)
class Number:
    """A numeric setting: its key, what it is (for the message), whole or real, its bounds, an example value."""

    key: str
    what: str
    whole: bool = False
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False  # low itself is not allowed
    high_open: bool = False
    example: str = ""

    def rule(self) -> str:
        kind = "a whole number" if self.whole else "a finite number"
        if self.low > -math.inf and self.high < math.inf:
            return f"{kind} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low > -math.inf:
            return f"{kind} {'>' if self.low_open else '>='} {self.low:g}"
        return kind

    def accepts(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if self.whole and not isinstance(value, numbers.Integral):
            return False
        if not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below


NUMBERS = (
    Number("model.optimizer.lr", "the learning rate", low=0, low_open=True, example="0.001"),
    Number("model.dropout", "the dropout probability", low=0, high=1, high_open=True, example="0.2"),
    Number("model.label_smoothing", "the label smoothing", low=0, high=1, high_open=True, example="0.1"),
    Number("model.init_range", "the uniform init range", low=0, low_open=True, example="0.1"),
    Number("model.embedding_size", "the embedding size", whole=True, low=1, example="256"),
    Number("model.encoder.hidden_size", "the encoder size", whole=True, low=1, example="256"),
    Number("model.encoder.num_layers", "the number of encoder layers", whole=True, low=1, example="2"),
    Number("model.decoder.hidden_size", "the decoder size", whole=True, low=1, example="512"),
    Number("model.guided_alignment.weight", "the guided-alignment loss weight", low=0, example="1.0"),
    Number("model.scheduler.warmup_steps", "the warm-up length", whole=True, low=0, example="4000"),
    Number("model.search.beam_size", "the beam size", whole=True, low=1, example="5"),
    Number("model.search.n_best", "the number of hypotheses", whole=True, low=1, example="1"),
    Number("model.search.alpha", "the length penalty", low=0, example="0.6"),
    Number("model.search.beta", "the coverage penalty", low=0, example="0.2"),
    Number("model.search.min_length", "the minimum length", whole=True, low=0, example="0"),
    Number("model.search.max_length", "the maximum length", whole=True, low=1, example="200"),
    Number("model.search.max_length_ratio", "the length ratio", low=0, low_open=True, example="1.5"),
    Number("model.search.max_length_offset", "the length offset", whole=True, low=0, example="10"),
    Number("model.search.temperature", "the sampling temperature", low=0, low_open=True, example="1.0"),
    Number("model.search.top_k", "top-k (0: all tokens)", whole=True, low=0, example="10"),
    Number("model.search.top_p", "top-p", low=0, high=1, low_open=True, example="0.9"),
    Number("model.search.n_samples", "the number of samples", whole=True, low=1, example="1"),
    Number("data.batch_size", "the batch size", whole=True, low=1, example="64"),
    Number("data.eval_batch_size", "the evaluation batch size", whole=True, low=1, example="200"),
    Number("data.max_length", "the length filter", whole=True, low=1, example="100"),
    Number("trainer.gradient_clip_val", "the gradient clipping norm", low=0, example="1.0"),
    Number("trainer.accumulate_grad_batches", "the gradient accumulation", whole=True, low=1, example="1"),
)
"""The numeric settings checked before anything is built; a key that is absent or null is not checked (null
means "off" or "default" for the keys that allow it)."""


def check_numbers(cfg: DictConfig, table: Iterable[Number] = NUMBERS) -> None:
    """Check every setting of ``table`` present in ``cfg`` for its type (whole or real number, not a string or a
    bool), finiteness (no NaN or infinity) and range.

    Raises:
        ConfigError: naming the key, the value, the rule and an example value.
    """
    for number in table:
        value = OmegaConf.select(cfg, number.key, default=None)
        if value is None or number.accepts(value):
            continue
        raise ConfigError(
            f"{number.key}={value!r}: {number.what} must be {number.rule()}. Fix: e.g. {number.key}={number.example}"
        )


def validation_never_runs(trainer: DictConfig) -> str | None:
    """Why the validation settings of ``trainer`` (a ``trainer`` config) never validate, naming the keys; None when
    they do: ``limit_val_batches=0``, or ``check_val_every_n_epoch`` above ``max_epochs`` in a run bounded by epochs
    only (no ``max_steps``, whose last step is validated, and no step-based ``val_check_interval``)."""
    if trainer.get("limit_val_batches", 1.0) in (0, 0.0):
        return f"trainer.limit_val_batches={trainer.limit_val_batches} turns validation off"
    every, epochs = trainer.get("check_val_every_n_epoch"), trainer.get("max_epochs")
    interval = trainer.get("val_check_interval")
    by_steps = isinstance(interval, int) and not isinstance(interval, bool)
    if isinstance(every, int) and isinstance(epochs, int) and 0 < epochs < every and trainer.get("max_steps", -1) in (-1, None) and not by_steps:
        return f"trainer.check_val_every_n_epoch={every} with trainer.max_epochs={epochs} never validates"
    return None


def check_validation_readers(cfg: DictConfig) -> None:
    """Refuse a run that never validates (:func:`validation_never_runs`) while a setting needs its score: the LR
    scheduler's ``monitor`` (``model.scheduler_config.monitor``, the plateau schedule) or a callback's ``monitor``
    (the best checkpoint, early stopping). Lightning would fail only after the first epoch, with no checkpoint, or
    keep no best checkpoint.

    Raises:
        ConfigError: naming every key that reads the validation score and the fixes.
    """
    if not cfg.get("train", True) or not (never := validation_never_runs(cfg.trainer)):
        return
    readers = []
    scheduler_monitor = str((cfg.model.get("scheduler_config") or {}).get("monitor") or "")
    if cfg.model.get("scheduler") and scheduler_monitor.startswith("val/"):
        readers.append((f"model.scheduler_config.monitor={scheduler_monitor}", "model/scheduler=constant"))
    for name, callback in (cfg.get("callbacks") or {}).items():
        monitor = str(callback.get("monitor") or "") if isinstance(callback, DictConfig) else ""
        if monitor.startswith("val/") and callback.get("save_top_k", 1) != 0:
            readers.append((f"callbacks.{name}.monitor={monitor}", f"callbacks.{name}=null"))
    if readers:
        enable = "trainer.limit_val_batches=N (N > 0)" if "limit_val_batches" in never else "trainer.check_val_every_n_epoch=1"
        raise ConfigError(
            f"{never}, but {', '.join(r for r, _ in readers)} read{'s' if len(readers) == 1 else ''} its score. Fix: "
            f"pass {enable}, or also {' '.join(f for _, f in readers)}"
        )


def check_option_names(node: DictConfig, key: str) -> None:
    """Raise ConfigError for a key of ``node`` (a config with ``_target_``) that its target does not take, and so
    for its nested configs; a target that takes ``**kwargs`` takes any key."""
    target = node.get("_target_")
    if not isinstance(target, str):
        return
    try:
        signature = inspect.signature(hydra.utils.get_object(target))
    except (ImportError, ValueError, TypeError) as e:
        raise ConfigError(f"{key}._target_={target}: cannot be imported ({e}). Fix: check the name") from None
    parameters = signature.parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        known = (*_CONFIG_KEYS, *_CONSUMED_KEYS.get(key, ()))
        if unknown := [k for k in node if k not in parameters and k not in known]:
            options = ", ".join(p for p in parameters if p not in ("self", "args", "kwargs"))
            raise ConfigError(
                f"{key}.{unknown[0]}: not an option of {target} (its options: {options}). Fix: remove "
                f"+{key}.{unknown[0]}=..., or correct the name"
            )
    for name, value in node.items():
        if isinstance(value, DictConfig):
            check_option_names(value, f"{key}.{name}")


def align_validation_cadence(cfg: DictConfig) -> None:
    """Make the validation cadence, the scheduler that reads the validation score and the checkpoints work together on
    any corpus size (editing ``cfg.trainer`` and ``cfg.model.scheduler_config``; each change is logged):

    - ``trainer.val_check_interval=N`` (an int) validates every N optimizer steps, counted across epochs
      (``check_val_every_n_epoch=None``), so N may exceed the batches of one epoch; a scheduler that monitors a
      ``val/`` metric per epoch then steps after each validation instead (``interval=validation``: the module steps
      it, since Lightning counts a step interval in batches of the current epoch).
    - ``trainer.check_val_every_n_epoch=K`` steps such a scheduler every K epochs (``frequency=K``), when the
      validation score it reads is new.

    The periodic ``last.ckpt`` (``callbacks.resume_checkpoint.every_n_train_steps``) counts optimizer steps whatever
    the validation cadence; the best checkpoint is saved after a validation.
    """
    trainer, model = cfg.trainer, cfg.model
    interval = trainer.get("val_check_interval")
    scheduler = model.get("scheduler_config") or {}
    reads_val = str(scheduler.get("monitor", "")).startswith("val/") and scheduler.get("interval", "epoch") == "epoch"
    with open_dict(trainer), open_dict(model):
        if isinstance(interval, int) and not isinstance(interval, bool):
            if trainer.get("check_val_every_n_epoch") is not None:
                trainer.check_val_every_n_epoch = None
                log.info("validating every %d steps across epochs (trainer.val_check_interval=%d)", interval, interval)
            if reads_val:
                model.scheduler_config.interval, model.scheduler_config.frequency = AFTER_VALIDATION, 1
                log.info("the LR scheduler steps after each validation (every %d steps) on %s", interval, scheduler.monitor)
        elif reads_val and (every := trainer.get("check_val_every_n_epoch")) and scheduler.get("frequency", 1) % every:
            model.scheduler_config.frequency = every
            log.info("the LR scheduler steps every %d epochs, after each validation, on %s", every, scheduler.monitor)


def check_run(
    cfg: DictConfig, datamodule: L.LightningDataModule, model: L.LightningModule, callbacks: Iterable[L.Callback]
) -> None:
    """Check what the run will need once the data module is set up for fitting and the model is built: the test
    split's files (read and encoded now), the output folder (writable), and free disk space for checkpoints (a
    warning with the figures); remove orphaned temporary files of interrupted writes in the checkpoint folders.

    Raises:
        DataError: a test file is missing, empty, not UTF-8 or misaligned, or no test files are configured.
        ConfigError: the output folder is not writable.
    """
    if cfg.get("test", True):
        datamodule.setup("test")
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if not os.access(output_dir, os.W_OK | os.X_OK):
        raise ConfigError(f"paths.output_dir={output_dir}: not writable. Fix: pass hydra.run.dir=<a folder you can write>")
    folders = {output_dir, *(Path(c.dirpath) for c in callbacks if getattr(c, "dirpath", None))}
    for folder in sorted(folders):
        remove_orphaned_temporaries(folder)
    if cfg.get("train", True):
        _warn_if_disk_is_short(output_dir, model)


def checkpoint_bytes(model: L.LightningModule) -> int:
    """About the size of one training checkpoint of ``model``: its weights and Adam's two moments per weight."""
    return 3 * sum(p.numel() * p.element_size() for p in model.parameters())


def _warn_if_disk_is_short(folder: Path, model: L.LightningModule) -> None:
    size = checkpoint_bytes(model)
    free = shutil.disk_usage(folder).free
    if free < 3 * size:  # last.ckpt, the best one, and a temporary copy while one is written
        log.warning(
            "only %.0f MiB free in %s; a checkpoint takes about %.0f MiB and up to 3 are on disk at once: the run may "
            "stop with a full disk. Fix: free space, or pass hydra.run.dir=<a folder on a larger disk>",
            free / _MIB, folder, size / _MIB,
        )
