"""Schedules of the teacher-forcing ratio over training steps (scheduled sampling, Bengio et al. 2015).

The teacher-forcing ratio is the probability of feeding the reference token at a decoder step; with probability
``1 - ratio`` the model's own prediction from the previous step is fed instead. A schedule maps the optimizer step
``i`` (the trainer's ``global_step``) to that ratio, so resuming a run from a checkpoint resumes the schedule exactly.

Every schedule keeps the ratio at 1.0 for ``warmup_steps`` steps, then applies its decay to ``i - warmup_steps``,
and never goes below ``floor``. Bengio et al. 2015 (Sec. 2.4) name the three decays: linear ``max(eps, k - c i)``,
exponential ``k^i`` and inverse sigmoid ``k / (k + exp(i / k))``.
"""

from __future__ import annotations

import math

from .errors import ConfigError

FEEDS = ("argmax", "sample")


class TeacherForcingSchedule:
    """Base schedule: ``ratio(step) = 1`` during warm-up, then ``max(floor, decay(step - warmup_steps))``.

    Args:
        warmup_steps: steps (optimizer updates) of pure teacher forcing before the decay starts.
        floor: the lowest ratio, in [0, 1].
        feed: what a sequence feeds when it is not teacher-forced: ``argmax`` (the most probable token) or
            ``sample`` (a token drawn from the model's distribution, as in Bengio et al. 2015).
        parallel: draw the model's predictions from a first teacher-forced pass and decode again on the mixed
            inputs (parallel scheduled sampling, Duckworth et al. 2019, with two passes), so the decoder keeps its
            one-call unroll; false feeds each step's prediction to the next step (the sequential original).

    Raises:
        ConfigError: for a floor outside [0, 1], negative warm-up, or an unknown ``feed``.
    """

    def __init__(self, warmup_steps: int = 0, floor: float = 0.0, feed: str = "argmax", parallel: bool = False) -> None:
        if not 0.0 <= floor <= 1.0:
            raise ConfigError(f"model.teacher_forcing.floor={floor}: must be in [0, 1], e.g. model.teacher_forcing.floor=0.5")
        if warmup_steps < 0:
            raise ConfigError(f"model.teacher_forcing.warmup_steps={warmup_steps}: must be >= 0")
        if feed not in FEEDS:
            raise ConfigError(f"model.teacher_forcing.feed={feed!r}: choose one of {', '.join(FEEDS)}")
        self.warmup_steps = warmup_steps
        self.floor = floor
        self.feed = feed
        self.parallel = parallel

    def decay(self, i: int) -> float:
        """The ratio ``i`` steps after warm-up, before the floor is applied."""
        raise NotImplementedError

    def __call__(self, step: int) -> float:
        """The teacher-forcing ratio at optimizer step ``step`` (0-based)."""
        if step < self.warmup_steps:
            return 1.0
        return min(1.0, max(self.floor, self.decay(step - self.warmup_steps)))

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({settings})"


class Constant(TeacherForcingSchedule):
    """A fixed ratio (1.0 is plain teacher forcing, Williams & Zipser 1989).

    Args:
        ratio: the teacher-forcing ratio after warm-up, in [0, 1].
    """

    def __init__(self, ratio: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= ratio <= 1.0:
            raise ConfigError(f"model.teacher_forcing.ratio={ratio}: must be in [0, 1]")
        self.ratio = ratio

    def decay(self, i: int) -> float:
        return self.ratio

    def __call__(self, step: int) -> float:
        return 1.0 if step < self.warmup_steps else self.ratio  # a constant ratio is not raised to the floor


class Linear(TeacherForcingSchedule):
    """Linear decay from ``start`` to ``floor`` over ``decay_steps`` steps: Bengio et al.'s ``max(eps, k - c i)``
    with ``k = start``, ``eps = floor`` and ``c = (start - floor) / decay_steps``.
    """

    def __init__(self, start: float = 1.0, decay_steps: int = 5000, **kwargs) -> None:
        super().__init__(**kwargs)
        if decay_steps < 1:
            raise ConfigError(f"model.teacher_forcing.decay_steps={decay_steps}: must be >= 1")
        self.start = start
        self.decay_steps = decay_steps

    def decay(self, i: int) -> float:
        return self.start - (self.start - self.floor) * min(i, self.decay_steps) / self.decay_steps


class Exponential(TeacherForcingSchedule):
    """Exponential decay ``k^i`` (Bengio et al. 2015), ``k < 1``; e.g. k = 0.9995 halves the ratio in ~1,386 steps."""

    def __init__(self, k: float = 0.9995, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0.0 < k <= 1.0:
            raise ConfigError(f"model.teacher_forcing.k={k}: the exponential schedule needs k in (0, 1], e.g. 0.9995")
        self.k = k

    def decay(self, i: int) -> float:
        return self.k**i


class InverseSigmoid(TeacherForcingSchedule):
    """Inverse sigmoid decay ``k / (k + exp(i / k))`` (Bengio et al. 2015), ``k >= 1``; the ratio is 0.5 at
    ``i = k ln k`` (e.g. k = 800: 0.97 at step 2,500, 0.61 at step 5,000)."""

    def __init__(self, k: float = 800.0, **kwargs) -> None:
        super().__init__(**kwargs)
        if k < 1.0:
            raise ConfigError(f"model.teacher_forcing.k={k}: the inverse-sigmoid schedule needs k >= 1, e.g. 800")
        self.k = k

    def decay(self, i: int) -> float:
        exponent = i / self.k
        return 0.0 if exponent > 700 else self.k / (self.k + math.exp(exponent))  # exp overflows past ~709
