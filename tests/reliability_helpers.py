"""Callbacks that tests add to a training subprocess through Hydra (``+callbacks.NAME._target_=...``)."""

from __future__ import annotations

import os
import signal as signals

import lightning as L
import torch


class SignalAtStep(L.Callback):
    """Send ``signal`` (SIGKILL, SIGTERM or SIGINT) to this process at the end of the training batch that reaches
    ``global_step == step``: a kill after exactly ``step`` optimizer steps."""

    def __init__(self, step: int, signal: str) -> None:
        self.step = step
        self.signum = getattr(signals, signal)
        self.sent = False

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if not self.sent and trainer.global_step >= self.step:
            self.sent = True
            os.kill(os.getpid(), self.signum)


class NaNWeightsAtStep(L.Callback):
    """Fill the first weight tensor with NaN at the end of the batch that reaches ``step``, as a diverging update
    would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))
