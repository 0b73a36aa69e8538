"""The objects of a run, built from its composed Hydra config: callbacks, the data module with its tokenizers, the
LightningModule sized by them, and the process-wide settings a run needs before any of them (seeds, oneDNN, Adam).
Used by ``s2s-train``, the tutorial notebook and the benchmarks.
"""

from __future__ import annotations

import hydra
import lightning as L
from omegaconf import DictConfig

from .data import Tokenizers
from .utils.precision import avoid_unusable_amx, unfuse_optimizer_for_clipping


def instantiate_callbacks(cfg: DictConfig | None) -> list[L.Callback]:
    """Instantiate every callback under ``cfg`` (a mapping name -> callback config; null entries are skipped)."""
    return [hydra.utils.instantiate(c) for c in (cfg or {}).values() if isinstance(c, DictConfig) and "_target_" in c]


def build_module(model_cfg: DictConfig, datamodule: L.LightningDataModule) -> L.LightningModule:
    """The LightningModule of ``model_cfg`` (``conf/model``), sized by the data module's tokenizers (vocabulary sizes,
    special ids), with those tokenizers attached so its checkpoints carry them."""
    model = hydra.utils.instantiate(
        model_cfg,
        src_vocab_size=datamodule.src_vocab_size,
        tgt_vocab_size=datamodule.tgt_vocab_size,
        pad_id=datamodule.pad_id,
        bos_id=datamodule.bos_id,
        eos_id=datamodule.eos_id,
        _recursive_=False,
    )
    model.tokenizers = datamodule.tokenizers
    return model


def prepare_run(cfg: DictConfig) -> None:
    """What a run does before building anything: cap oneDNN's ISA where CPU bfloat16 needs it (before any oneDNN
    operation), unfuse Adam where mixed precision clips gradients, and seed every generator (``cfg.seed``)."""
    avoid_unusable_amx(cfg.trainer.get("precision"), cfg.trainer.get("accelerator"))
    unfuse_optimizer_for_clipping(cfg)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)


def build_data(data_cfg: DictConfig, tokenizers: Tokenizers | None = None, stage: str | None = "fit") -> L.LightningDataModule:
    """The data module of ``data_cfg`` (``conf/data``) with its tokenizers, trained or read from the cache
    (or ``tokenizers``, e.g. a checkpoint's), set up for ``stage`` unless it is None."""
    datamodule = hydra.utils.instantiate(data_cfg)
    if tokenizers is not None:
        datamodule.tokenizers = tokenizers
    datamodule.prepare_data()
    if stage is not None:
        datamodule.setup(stage)
    return datamodule
