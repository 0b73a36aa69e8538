"""Base of the callbacks that log something about a few fixed sentences after each validation."""

from __future__ import annotations

import lightning as L
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch.utilities import rank_zero_only

from ..data import Batch


class FixedSentencesCallback(L.Callback):
    """After each validation (not the sanity check), on rank zero only and only with a logger attached, hand the
    first ``num_sentences`` sentences of ``split`` (fewer if the split is shorter), as one batch on the model's
    device, to :meth:`log_sentences`. Taken from the start of the split, they stay the same across validations.

    Args:
        num_sentences: how many sentences, from the start of the split.
        split: the data module split to read them from (val or test; never filtered, so positions are corpus lines).
    """

    def __init__(self, num_sentences: int, split: str = "val") -> None:
        self.num_sentences = num_sentences
        self.split = split

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.num_sentences <= 0 or not trainer.loggers:
            return
        datamodule = trainer.datamodule
        count = min(self.num_sentences, len(datamodule.sources(self.split)))
        if count:
            batch = move_data_to_device(datamodule.batch_of(self.split, range(count)), pl_module.device)
            self.log_sentences(trainer, pl_module, batch)

    def log_sentences(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Batch) -> None:
        """Log what the callback shows about ``batch`` (the fixed sentences, in split order)."""
        raise NotImplementedError
