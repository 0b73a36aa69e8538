"""Train, then test the best checkpoint: ``python -m seq2seq_lit.train [overrides]`` (console script ``s2s-train``).

Builds the data module, the LightningModule, callbacks, loggers and trainer from the Hydra config (``conf/train.yaml``),
fits, tests the best checkpoint (by ``val/bleu``), prints a summary, writes ``metrics.json`` into the run's output
folder, and returns the metrics so that a Hydra sweeper can optimize ``val/bleu_best``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from .utils.entry import CONFIG_DIR, run_entry_point
from .utils.loggers import finish_loggers, instantiate_loggers
from .utils.summary import print_summary

log = logging.getLogger(__name__)


def instantiate_callbacks(cfg: DictConfig | None) -> list[L.Callback]:
    """Instantiate every callback under ``cfg`` (a mapping name -> callback config; null entries are skipped)."""
    return [hydra.utils.instantiate(c) for c in (cfg or {}).values() if isinstance(c, DictConfig) and "_target_" in c]


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit and test as configured; returns the metrics also written to ``metrics.json``."""
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)

    log.info("Data: %s", cfg.data._target_)
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")

    model = hydra.utils.instantiate(
        cfg.model,
        src_vocab_size=datamodule.src_vocab_size,
        tgt_vocab_size=datamodule.tgt_vocab_size,
        pad_id=datamodule.pad_id,
        bos_id=datamodule.bos_id,
        eos_id=datamodule.eos_id,
        _recursive_=False,
    )
    model.tokenizers = datamodule.tokenizers
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for logger in loggers:
        logger.log_hyperparams({**OmegaConf.to_container(cfg, resolve=True), "data_filtered": datamodule.num_filtered})

    try:
        metrics = _fit_and_test(cfg, trainer, model, datamodule, loggers)
    finally:
        finish_loggers(loggers)
    print_summary(metrics, Path(cfg.paths.output_dir))
    return metrics


def _fit_and_test(
    cfg: DictConfig,
    trainer: L.Trainer,
    model: L.LightningModule,
    datamodule: L.LightningDataModule,
    loggers: list[Logger],
) -> dict[str, Any]:
    """Fit (unless ``cfg.train`` is false), test the best checkpoint (unless ``cfg.test`` is false), write
    ``metrics.json`` and give the loggers the sacreBLEU signature."""
    metrics: dict[str, Any] = {}
    if cfg.get("train", True):
        start = time.perf_counter()
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        metrics["train_seconds"] = round(time.perf_counter() - start, 1)
        metrics["train_tokens_per_second"] = round(model.trained_tokens / max(metrics["train_seconds"], 1e-9), 1)
        metrics.update(_floats(trainer.callback_metrics))

    if cfg.get("test", True):
        ckpt_path = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if not ckpt_path:
            log.warning("No best checkpoint found: testing the current weights")
        trainer.test(model, datamodule=datamodule, ckpt_path=ckpt_path or None, weights_only=True)
        metrics.update(_floats(trainer.callback_metrics))
        metrics["best_model_path"] = ckpt_path

    metrics["global_step"] = trainer.global_step
    metrics["sacrebleu_signature"] = getattr(model, "sacrebleu_signature", None)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    for logger in loggers:
        logger.log_hyperparams({"sacrebleu_signature": metrics["sacrebleu_signature"]})
    return metrics


def _floats(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in metrics.items()}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train.yaml")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns ``cfg.optimized_metric`` for sweepers."""
    metrics = run_entry_point(train, cfg)
    return metrics.get(cfg.get("optimized_metric")) if cfg.get("optimized_metric") else None


if __name__ == "__main__":
    main()
