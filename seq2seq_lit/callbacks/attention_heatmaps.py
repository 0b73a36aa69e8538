"""Log heatmaps of the attention weights of a few fixed sentences after each validation."""

from __future__ import annotations

import lightning as L

from ..data import Batch
from ..plots.attention import plot_attention
from ..utils.loggers import log_figure
from .fixed_sentences import FixedSentencesCallback


class AttentionHeatmaps(FixedSentencesCallback):
    """After each validation, decode the first ``num_sentences`` sentences of ``split`` and log their attention
    weights (source pieces x emitted target pieces) as images under ``{split}/attention/{i}``, on rank zero only.

    Args: see :class:`~seq2seq_lit.callbacks.fixed_sentences.FixedSentencesCallback` (default 3 sentences).
    """

    def __init__(self, num_sentences: int = 3, split: str = "val") -> None:
        super().__init__(num_sentences, split)

    def log_sentences(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Batch) -> None:
        hypotheses = pl_module(batch).best()
        tokenizers = pl_module.tokenizers
        for row in range(len(batch)):
            src_len = int(batch.src_lengths[row])
            tgt_len = int(hypotheses.lengths[row]) + 1  # the step that emitted EOS too (or the cap)
            tgt_len = min(tgt_len, hypotheses.tokens.size(1))
            src_pieces = tokenizers.src.id_to_pieces(batch.src[row, :src_len].tolist())
            tgt_pieces = tokenizers.tgt.id_to_pieces(hypotheses.tokens[row, :tgt_len].tolist())
            weights = hypotheses.attention[row, :tgt_len, :src_len].float().cpu().numpy()
            index = int(batch.indices[row])
            fig = plot_attention(weights, src_pieces, tgt_pieces, title=f"{self.split} sentence {index}, step {trainer.global_step}")
            log_figure(trainer.loggers, f"{self.split}/attention/{index}", fig, step=trainer.global_step)
