"""Log a table of sample translations of a few fixed sentences after each validation."""

from __future__ import annotations

import lightning as L

from ..data import Batch
from ..utils.loggers import log_text_table
from .fixed_sentences import FixedSentencesCallback

COLUMNS = ("index", "source", "reference", "hypothesis")


class SampleTranslations(FixedSentencesCallback):
    """After each validation (not the sanity check), translate the first ``num_sentences`` sentences of ``split`` with
    the configured search and log ``(index, source, reference, hypothesis)`` rows under ``{split}/translations``, on
    rank zero only: a ``wandb.Table`` for W&B, a Markdown table in TensorBoard's text tab, and
    ``tables/{split}_translations_step<N>.tsv`` beside a CSV log (:func:`~seq2seq_lit.utils.loggers.log_text_table`).

    The sentences stay the same across validations, so the table shows how their translations change.

    Args: see :class:`~seq2seq_lit.callbacks.fixed_sentences.FixedSentencesCallback` (default 5 sentences).
    """

    def __init__(self, num_sentences: int = 5, split: str = "val") -> None:
        super().__init__(num_sentences, split)

    def log_sentences(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Batch) -> None:
        datamodule = trainer.datamodule
        sources, references = datamodule.sources(self.split), datamodule.references(self.split)
        hypotheses = pl_module.translate(batch)
        rows = [(int(i), sources[i], references[i], hyp) for i, hyp in zip(batch.indices.tolist(), hypotheses)]
        log_text_table(trainer.loggers, f"{self.split}/translations", COLUMNS, rows, step=trainer.global_step)
