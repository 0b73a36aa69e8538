"""Learning-rate schedules (``model/scheduler=...``), built from PyTorch's schedulers.

Steps count optimizer steps (``global_step``; with gradient accumulation, one per accumulated batch). ``s`` below is
the index of the step about to run (0 first), ``w`` the warmup steps, ``N`` the run's total steps
(``trainer.max_steps``); each schedule gives the factor by which the optimizer's ``lr`` is multiplied at step ``s``.

=================  ======================================================================  ====================
schedule           factor at step ``s``                                                    source
=================  ======================================================================  ====================
``plateau``        1, halved when ``val/bleu`` did not improve over an epoch (per epoch)   ReduceLROnPlateau
``constant``       1                                                                       ConstantLR
``linear``         ``1 -> min_factor`` linearly from step ``w`` to step ``N``              LinearLR
``cosine``         ``min_factor + (1 - min_factor) (1 + cos(pi (s - w) / (N - w))) / 2``   CosineAnnealingLR
``inverse_sqrt``   ``sqrt(w / (s + 1))`` from step ``w`` on                                fairseq's inverse_sqrt
``noam``           ``d^-0.5 min((s + 1)^-0.5, (s + 1) w^-1.5)``; ``lr`` is the Noam factor  Vaswani et al. 2017,
                                                                                            Eq. 3
=================  ======================================================================  ====================

Every schedule starts with ``w`` linear warmup steps, the factor rising from ``1 / w`` to 1 (LinearLR; ``w = 0``: no
warmup), composed with the schedule by SequentialLR; ``noam`` has its warmup in its formula. The per-step schedules run
with Lightning's ``interval: step``; ``plateau`` runs per epoch, and its warmup is a second scheduler, run per step.
LambdaLR's factors are picklable objects, so their settings travel in the checkpoint's scheduler state and a resumed run
continues the schedule exactly.
"""

from __future__ import annotations

import inspect
import math
import sys
from typing import Any

import hydra
from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    ConstantLR,
    CosineAnnealingLR,
    LambdaLR,
    LinearLR,
    LRScheduler,
    SequentialLR,
)

from .errors import ConfigError


def linear_warmup(optimizer: Optimizer, warmup_steps: int) -> LinearLR:
    """The factor rising linearly from ``1 / warmup_steps`` (step 0) to 1 (step ``warmup_steps``)."""
    return LinearLR(optimizer, start_factor=1.0 / warmup_steps, end_factor=1.0, total_iters=warmup_steps)


def _after_warmup(optimizer: Optimizer, warmup_steps: int, schedule: LRScheduler) -> LRScheduler:
    if warmup_steps == 0:
        return schedule
    return SequentialLR(optimizer, [linear_warmup(optimizer, warmup_steps), schedule], milestones=[warmup_steps])


def _decay_steps(name: str, warmup_steps: int, total_steps: int | None) -> int:
    if total_steps is None or total_steps <= 0:
        raise ConfigError(
            f"model/scheduler={name} decays over the whole run, but model.scheduler.total_steps={total_steps}; "
            f"fix: set trainer.max_steps (total_steps follows it) or model.scheduler.total_steps"
        )
    return total_steps - warmup_steps


def constant(optimizer: Optimizer, warmup_steps: int = 0) -> LRScheduler:
    """The optimizer's ``lr`` after the warmup."""
    return _after_warmup(optimizer, warmup_steps, ConstantLR(optimizer, factor=1.0, total_iters=0))


def linear(
    optimizer: Optimizer, warmup_steps: int = 0, total_steps: int | None = None, min_factor: float = 0.0
) -> LRScheduler:
    """Linear decay from ``lr`` after the warmup to ``min_factor * lr`` at ``total_steps``."""
    steps = _decay_steps("linear", warmup_steps, total_steps)
    return _after_warmup(optimizer, warmup_steps, LinearLR(optimizer, 1.0, min_factor, total_iters=steps))


def cosine(
    optimizer: Optimizer, warmup_steps: int = 0, total_steps: int | None = None, min_factor: float = 0.0
) -> LRScheduler:
    """Cosine decay (Loshchilov & Hutter 2017, no restarts) from ``lr`` to ``min_factor * lr`` at ``total_steps``."""
    steps = _decay_steps("cosine", warmup_steps, total_steps)
    eta_min = [min_factor * group["lr"] for group in optimizer.param_groups]
    schedule = CosineAnnealingLR(optimizer, T_max=steps, eta_min=eta_min[0])
    return _after_warmup(optimizer, warmup_steps, schedule)


class InverseSqrtFactor:
    """``sqrt(w / (s + 1))``, the decay of fairseq's ``inverse_sqrt`` after its warmup (picklable, for LambdaLR)."""

    def __init__(self, warmup_steps: int) -> None:
        self.warmup_steps = max(warmup_steps, 1)

    def __call__(self, step: int) -> float:
        return math.sqrt(self.warmup_steps / (step + self.warmup_steps + 1))


def inverse_sqrt(optimizer: Optimizer, warmup_steps: int = 4000) -> LRScheduler:
    """Linear warmup to ``lr``, then ``lr * sqrt(w / (s + 1))``."""
    return _after_warmup(optimizer, warmup_steps, LambdaLR(optimizer, InverseSqrtFactor(warmup_steps)))


class NoamFactor:
    """``d^-0.5 * min((s + 1)^-0.5, (s + 1) * w^-1.5)`` (Vaswani et al. 2017, Eq. 3; picklable, for LambdaLR)."""

    def __init__(self, model_size: int, warmup_steps: int) -> None:
        self.model_size = model_size
        self.warmup_steps = warmup_steps

    def __call__(self, step: int) -> float:
        n = step + 1
        return self.model_size**-0.5 * min(n**-0.5, n * self.warmup_steps**-1.5)


def noam(optimizer: Optimizer, warmup_steps: int = 4000, model_size: int = 512) -> LRScheduler:
    """The Noam schedule; the optimizer's ``lr`` is its factor (OpenNMT-py uses 2.0)."""
    if warmup_steps < 1:
        raise ConfigError(f"model.scheduler.warmup_steps={warmup_steps}: noam needs warmup_steps >= 1")
    return LambdaLR(optimizer, NoamFactor(model_size, warmup_steps))


AFTER_VALIDATION = "validation"
"""``model.scheduler_config.interval`` of a scheduler stepped by the module after each validation (set by
:func:`seq2seq_lit.preflight.align_validation_cadence` for ``trainer.val_check_interval=N``)."""
NEVER = sys.maxsize  # a Lightning frequency no batch index reaches


def lightning_schedulers(
    optimizer: Optimizer, scheduler: dict[str, Any], scheduler_config: dict[str, Any] | None, max_steps: int
) -> list[dict[str, Any]]:
    """Lightning's ``lr_scheduler`` entries of a ``model.scheduler`` ``_partial_`` config and its Lightning settings
    (``model.scheduler_config``: ``interval``, ``monitor``, ...).

    ``interval: validation`` (:data:`AFTER_VALIDATION`) registers the scheduler with Lightning for its checkpoints only;
    the module steps it after each validation.

    A schedule that takes no ``warmup_steps`` (``plateau``: PyTorch's ReduceLROnPlateau, stepped per epoch or, with
    an integer ``trainer.val_check_interval``, after each validation) gets its warmup as a second, per-step LinearLR
    entry; the schedules of this module compose it themselves (``warmup_steps`` is passed on).

    Raises:
        ConfigError: ``warmup_steps`` is negative, or not shorter than the run (``max_steps`` > 0), naming the key
            and the fix; or as the schedule's constructor raises.
    """
    scheduler, settings = dict(scheduler), dict(scheduler_config or {})
    warmup_steps = int(scheduler.get("warmup_steps", 0))
    if warmup_steps < 0:
        raise ConfigError(f"model.scheduler.warmup_steps={warmup_steps}: must be >= 0 (0: no warmup)")
    if 0 < max_steps <= warmup_steps:
        raise ConfigError(
            f"model.scheduler.warmup_steps={warmup_steps} is not shorter than the run (trainer.max_steps={max_steps}): "
            f"the learning rate would never reach model.optimizer.lr; fix: lower model.scheduler.warmup_steps or raise "
            f"trainer.max_steps"
        )
    separate_warmup = "warmup_steps" not in inspect.signature(hydra.utils.get_object(scheduler["_target_"])).parameters
    if separate_warmup:
        scheduler.pop("warmup_steps", None)
    if settings.get("interval") == AFTER_VALIDATION:
        # Lightning counts a "step" scheduler's frequency in batches of the current epoch, not in optimizer steps, so
        # it cannot follow validations counted across epochs: it is told never to step this one, and
        # Seq2SeqLitModule steps it after each validation with the fresh score.
        settings.update(interval="step", frequency=NEVER)
    entries = [{"scheduler": hydra.utils.instantiate(scheduler)(optimizer=optimizer), **settings}]
    if separate_warmup and warmup_steps:
        entries.insert(0, {"scheduler": linear_warmup(optimizer, warmup_steps), "interval": "step", "name": "warmup"})
    return entries

