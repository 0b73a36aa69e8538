"""What training does when the loss is NaN or infinite: stop with a message naming the step, or skip the step."""

from __future__ import annotations

import logging

import torch

from ..errors import ConfigError, Seq2SeqError

log = logging.getLogger(__name__)

NONFINITE_LOSS_ACTIONS = ("stop", "skip")


class NonFiniteError(Seq2SeqError):
    """The training loss or the weights became NaN or infinite (usually a learning rate too high for the model)."""


def check_nonfinite_action(action: str) -> str:
    """``action`` if it is one of :data:`NONFINITE_LOSS_ACTIONS`; else ConfigError listing the valid choices."""
    if action not in NONFINITE_LOSS_ACTIONS:
        raise ConfigError(
            f"model.nonfinite_loss={action!r}; valid choices: {', '.join(NONFINITE_LOSS_ACTIONS)} (stop: end the run "
            f"at the first NaN or infinite loss; skip: skip that step's update and go on)"
        )
    return action


def on_nonfinite_loss(action: str, loss: torch.Tensor, step: int, epoch: int, batch_idx: int) -> None:
    """Called with a NaN or infinite training loss: for "skip", log a warning naming the step (the caller then skips
    the update); for "stop", raise.

    Raises:
        NonFiniteError: ``action`` is "stop"; the message names the step and gives the fixes.
    """
    where = f"step {step} (epoch {epoch}, batch {batch_idx})"
    if action == "skip":
        log.warning("train/loss is %s at %s: skipping this step's update (model.nonfinite_loss=skip)", loss.item(), where)
        return
    raise NonFiniteError(
        f"train/loss is {loss.item()} at {where}: training stopped before this step's update "
        f"(model.nonfinite_loss=stop), and the checkpoints saved before are intact. Fix: lower model.optimizer.lr or "
        f"trainer.gradient_clip_val and resume from the last checkpoint (ckpt_path=last), or pass "
        f"model.nonfinite_loss=skip to skip such steps"
    )
