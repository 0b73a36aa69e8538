"""Validate once more when ``max_steps`` ends training between two scheduled validations."""

from __future__ import annotations

from typing import Any

import lightning as L


class ValidateOnLastStep(L.Callback):
    """Ask the trainer to stop after the step that reaches ``max_steps``.

    Lightning runs validation before it honours ``trainer.should_stop`` (as it does for early stopping), so the last
    weights are always validated and can become the best checkpoint; otherwise a run whose ``max_steps`` falls inside
    an epoch would never score its final steps.
    """

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
            trainer.should_stop = True
