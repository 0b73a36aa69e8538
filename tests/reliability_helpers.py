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


class SignalAtBatch(L.Callback):
    """Send ``signal`` to this process at the end of the ``batch``-th training batch of this run (1-based), e.g. in
    the middle of a gradient-accumulation window, where no optimizer step has just happened."""

    def __init__(self, batch: int, signal: str) -> None:
        self.batch = batch
        self.signum = getattr(signals, signal)
        self.seen = 0

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        self.seen += 1
        if self.seen == self.batch:
            os.kill(os.getpid(), self.signum)


class SaveFirstGradients(L.Callback):
    """Save the gradients of the first optimizer step (before clipping) as ``{name: tensor}`` to ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.saved = False

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: object) -> None:
        if not self.saved:
            self.saved = True
            torch.save({n: p.grad.detach().clone() for n, p in pl_module.named_parameters() if p.grad is not None}, self.path)
