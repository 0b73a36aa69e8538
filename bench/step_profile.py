"""Where a training step's time goes: ``torch.profiler`` over a few steps of a real fit, summarized.

On a GPU it counts the device activities per step (kernels; copies and memsets apart), the time the GPU was busy
(the union of their intervals) against the wall time of the steps, and the kernels that took the most GPU time. On a
CPU the same code counts the outermost operators instead (``aten::...`` calls made from no other operator) and
their time. Used by ``bench/gpu_check.py`` (a callback of one training run, inside its untimed warm-up).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity

NAME_CHARS = 120  # kernel names are long C++ templates; the head names them well enough


def _busy_us(intervals: Iterable[tuple[float, float]]) -> float:
    """Length of the union of ``(start, end)`` intervals (microseconds)."""
    busy, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        busy += stop - max(start, end)
        end = stop
    return busy


def _outermost_op(event: Any) -> bool:
    """Whether ``event`` is an ``aten::`` operator called from no other one (Lightning's and the optimizer's recorded
    ranges around it do not count)."""
    if not event.name.startswith("aten::"):
        return False
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith("aten::"):
            return False
        parent = parent.cpu_parent
    return True


def summarize(events: Iterable[Any], steps: int, wall_s: float, cuda: bool, top: int = 10) -> dict[str, Any]:
    """Figures per step of the profiler's ``events`` (``prof.events()``) over ``steps`` steps that took ``wall_s``
    seconds of wall time.

    Returns a dict: ``counted`` (what was counted), ``kernels_per_step`` (kernels, or top-level operators on a CPU),
    ``copies_per_step`` (memcpy / memset on the GPU; 0 on a CPU), ``busy_ms_per_step`` (union of their intervals),
    ``wall_ms_per_step``, ``busy_fraction`` (busy / wall) and ``top`` (name, calls per step, ms per step and share
    of the busy time, by total time).
    """
    if cuda:
        activities = [e for e in events if e.device_type == DeviceType.CUDA]
        counted = "CUDA kernels (memcpy / memset counted apart)"
    else:
        activities = [e for e in events if e.device_type == DeviceType.CPU and _outermost_op(e)]
        counted = "outermost aten operators on the CPU (no GPU: the same code path, counted on the host)"
    copies = [e for e in activities if cuda and e.name.startswith(("Memcpy", "Memset"))]
    busy_us = _busy_us((e.time_range.start, e.time_range.end) for e in activities)
    by_name: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for e in activities:
        by_name[e.name][0] += 1
        by_name[e.name][1] += e.time_range.end - e.time_range.start
    ranked = sorted(by_name.items(), key=lambda item: -item[1][1])[:top]
    total_us = sum(us for _, us in by_name.values()) or 1.0
    return {
        "counted": counted,
        "steps": steps,
        "kernels_per_step": (len(activities) - len(copies)) / steps,
        "copies_per_step": len(copies) / steps,
        "busy_ms_per_step": busy_us / 1e3 / steps,
        "wall_ms_per_step": wall_s * 1e3 / steps,
        "busy_fraction": busy_us / 1e6 / wall_s if wall_s > 0 else None,
        "top": [
            {"name": name[:NAME_CHARS], "calls_per_step": calls / steps, "ms_per_step": us / 1e3 / steps,
             "share": us / total_us}
            for name, (calls, us) in ranked
        ],
    }


class StepProfile(L.Callback):
    """Profiles training steps ``start`` to ``start + steps - 1`` (by ``global_step``) and writes :func:`summarize`'s
    figures as JSON to ``path``. The wall time is taken with the device synchronized at both ends; the profiler's own
    overhead is in it (compare ``busy_ms_per_step`` with an unprofiled step time too)."""

    def __init__(self, path: str, start: int = 5, steps: int = 10, top: int = 10) -> None:
        self.path, self.start, self.steps, self.top = Path(path), start, steps, top
        self._profiler: torch.profiler.profile | None = None
        self._started = 0.0

    @staticmethod
    def _now(device: torch.device) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.start and self._profiler is None and not self.path.exists():
            cuda = pl_module.device.type == "cuda"
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
            self._profiler = torch.profiler.profile(activities=activities)
            self._started = self._now(pl_module.device)
            self._profiler.__enter__()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._profiler is None or trainer.global_step < self.start + self.steps:
            return
        wall = self._now(pl_module.device) - self._started
        self._profiler.__exit__(None, None, None)
        figures = summarize(self._profiler.events(), self.steps, wall, pl_module.device.type == "cuda", self.top)
        self.path.write_text(json.dumps({"first_step": self.start, **figures}, indent=1) + "\n")
        self._profiler = None
