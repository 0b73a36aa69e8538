"""Count the tokens training reads, for throughput figures (``train_tokens_per_second`` of ``metrics.json``)."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from ..data import PAD_ID, Batch


class TrainingTokens(L.Callback):
    """The non-pad source and target tokens (EOS included) of every training batch, summed on the device (no host
    synchronization per step) and over all processes by :meth:`total`.

    :func:`~seq2seq_lit.train.train` adds one to every run and divides :meth:`total` by the time ``fit`` took.
    """

    def __init__(self) -> None:
        self._tokens: torch.Tensor | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._tokens = torch.zeros((), dtype=torch.int64, device=pl_module.device)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Batch, batch_idx: int
    ) -> None:
        self._tokens += batch.src_lengths.sum() + (batch.tgt_out != PAD_ID).sum()

    def total(self, trainer: L.Trainer) -> int:
        """The tokens of this fit on all processes (0 before training); every process must call it."""
        device = trainer.strategy.root_device
        tokens = self._tokens if self._tokens is not None else torch.zeros((), device=device)
        return int(trainer.strategy.reduce(tokens.double(), reduce_op="sum"))
