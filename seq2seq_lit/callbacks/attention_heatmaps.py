"""Log heatmaps of the attention weights of a few fixed sentences after each validation."""

from __future__ import annotations

import lightning as L
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch.utilities import rank_zero_only

from ..plotting import plot_attention
from ..utils.loggers import log_figure


class AttentionHeatmaps(L.Callback):
    """After each validation, decode the first ``num_sentences`` sentences of ``split`` and log their attention
    weights (source pieces x emitted target pieces) as images under ``{split}/attention/{i}``, on rank zero only.

    Args:
        num_sentences: how many sentences, taken from the start of the split so they stay fixed across validations.
        split: the data module split to read them from.
    """

    def __init__(self, num_sentences: int = 3, split: str = "val") -> None:
        self.num_sentences = num_sentences
        self.split = split

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.num_sentences <= 0 or not trainer.loggers:
            return
        datamodule = trainer.datamodule
        batch = datamodule.batch_of(self.split, range(self.num_sentences))
        batch = move_data_to_device(batch, pl_module.device)
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
