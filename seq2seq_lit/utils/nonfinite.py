"""What training does when the loss is NaN or infinite: stop with a message naming the step, or skip the step."""

from __future__ import annotations

import logging

import torch

from ..errors import ConfigError, Seq2SeqError

log = logging.getLogger(__name__)

NONFINITE_LOSS_ACTIONS = ("stop", "skip")
DEFAULT_CHECK_EVERY = 100  # steps between reads of the loss check on an accelerator (NonFiniteWatch)


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


def on_nonfinite_loss(
    action: str, loss: torch.Tensor | float, step: int, epoch: int, batch_idx: int, detected_at: int | None = None
) -> None:
    """Called with a NaN or infinite training loss: for "skip", log a warning naming the step (the caller then skips
    the update); for "stop", raise. ``detected_at``: the later step at which a deferred check
    (:class:`NonFiniteWatch`) found it, None when found before the step's update.

    Raises:
        NonFiniteError: ``action`` is "stop"; the message names the step and gives the fixes.
    """
    value = float(loss)
    where = f"step {step} (epoch {epoch}, batch {batch_idx})"
    if action == "skip":
        log.warning("train/loss is %s at %s: skipping this step's update (model.nonfinite_loss=skip)", value, where)
        return
    when = "before this step's update" if detected_at is None else f"at step {detected_at}, before any later checkpoint"
    raise NonFiniteError(
        f"train/loss is {value} at {where}: training stopped {when} "
        f"(model.nonfinite_loss=stop), and the checkpoints saved before are intact. Fix: lower model.optimizer.lr or "
        f"trainer.gradient_clip_val and resume from the last checkpoint (ckpt_path=last), or pass "
        f"model.nonfinite_loss=skip to skip such steps"
    )


class NonFiniteWatch:
    """Watches the training loss for NaN or infinity, reading it on the host only where that costs nothing or is
    needed, so that a GPU's queue of kernels is not drained every step.

    - ``skip``, and any loss on the CPU: every step, before the update (skipping an update needs the answer on the
      host, as ``torch.amp.GradScaler``'s skipped steps do; on the CPU reading a value costs nothing).
    - ``stop`` on an accelerator: the first non-finite step (step, epoch, batch, loss) is recorded on the device
      without a sync, and read every ``check_every`` steps, before every checkpoint is written (:meth:`check`) and at
      the end of training; the run then stops naming that step. The steps in between have updated the weights in
      memory, but no checkpoint holds them.

    Args:
        action: ``stop`` or ``skip`` (``model.nonfinite_loss``).
        check_every: steps between reads of the record; None: 1 on the CPU, :data:`DEFAULT_CHECK_EVERY` elsewhere.

    Raises:
        ConfigError: an unknown action, or ``check_every < 1``.
    """

    def __init__(self, action: str, check_every: int | None = None) -> None:
        check_nonfinite_action(action)
        if check_every is not None and check_every < 1:
            raise ConfigError(f"model.nonfinite_check_every={check_every}: must be >= 1 (or null for the default)")
        self.action = action
        self.check_every = check_every
        self._first: torch.Tensor | None = None  # (4,): step, epoch, batch, loss of the first non-finite; step -1: none

    def update_allowed(self, loss: torch.Tensor, step: int, epoch: int, batch_idx: int) -> bool:
        """Whether the update of training step ``step`` may go ahead: False for a non-finite ``loss`` under ``skip``
        (after a warning naming the step).

        Raises:
            NonFiniteError: under ``stop``, ``loss`` is non-finite (read now), or a recorded one was (read now).
        """
        every = self.check_every or (1 if loss.device.type == "cpu" else DEFAULT_CHECK_EVERY)
        if self.action == "skip" or every == 1:
            if bool(torch.isfinite(loss)):
                return True
            on_nonfinite_loss(self.action, loss, step, epoch, batch_idx)
            return False
        # Filled on the device: torch.tensor(..., device=...) would be a blocking copy, which waits for the device.
        where = torch.stack([*(loss.new_full((), float(v)) for v in (step, epoch, batch_idx)), loss.detach()]).float()
        if self._first is None:
            self._first = torch.full_like(where, -1.0)
        first_and_bad = (self._first[0] < 0) & ~torch.isfinite(where[3])
        self._first = torch.where(first_and_bad, where, self._first)
        if (step + 1) % every == 0:
            self.check(step)
        return True

    def check(self, step: int) -> None:
        """Read the record of deferred steps (one host sync; nothing to read after immediate checks only).

        Raises:
            NonFiniteError: a recorded loss was non-finite; the message names its step and ``step``.
        """
        if self._first is None:
            return
        first_step, epoch, batch_idx, loss = self._first.tolist()
        if first_step >= 0:
            on_nonfinite_loss("stop", loss, int(first_step), int(epoch), int(batch_idx), detected_at=step)
