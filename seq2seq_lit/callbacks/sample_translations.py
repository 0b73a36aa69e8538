"""Log a table of sample translations of a few fixed sentences after each validation."""

from __future__ import annotations

import lightning as L
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch.utilities import rank_zero_only

from ..utils.loggers import log_text_table

COLUMNS = ("index", "source", "reference", "hypothesis")


class SampleTranslations(L.Callback):
    """After each validation (not the sanity check), translate the first ``num_sentences`` sentences of ``split`` with
    the configured search and log ``(index, source, reference, hypothesis)`` rows under ``{split}/translations``, on
    rank zero only: a ``wandb.Table`` for W&B, a Markdown table in TensorBoard's text tab, and
    ``tables/{split}_translations_step<N>.tsv`` beside a CSV log (:func:`~seq2seq_lit.utils.loggers.log_text_table`).

    The sentences stay the same across validations, so the table shows how their translations change.

    Args:
        num_sentences: how many sentences, from the start of the split.
        split: the data module split to read them from (val or test; never filtered, so positions are corpus lines).
    """

    def __init__(self, num_sentences: int = 5, split: str = "val") -> None:
        self.num_sentences = num_sentences
        self.split = split

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.num_sentences <= 0 or not trainer.loggers:
            return
        datamodule = trainer.datamodule
        sources, references = datamodule.sources(self.split), datamodule.references(self.split)
        indices = list(range(min(self.num_sentences, len(sources))))
        if not indices:
            return
        batch = move_data_to_device(datamodule.batch_of(self.split, indices), pl_module.device)
        hypotheses = pl_module.translate(batch)
        rows = [(int(i), sources[i], references[i], hyp) for i, hyp in zip(batch.indices.tolist(), hypotheses)]
        log_text_table(trainer.loggers, f"{self.split}/translations", COLUMNS, rows, step=trainer.global_step)
