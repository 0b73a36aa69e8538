"""``torch.compile`` of the training step's forward and loss (``model.compile``).

The forward pass and the loss are compiled as one function with static shapes (``dynamic=False``); AOTAutograd
compiles their backward with them; gradient clipping and the optimizer step stay eager (Adam is fused already).
Modes are ``torch.compile``'s: ``default`` (inductor's fused kernels), ``reduce-overhead`` (the same, replayed as CUDA
graphs: one launch per graph instead of one per kernel, which is what an RNN decoder at small batches is short of on a
GPU), ``max-autotune`` and ``max-autotune-no-cudagraphs``. Every new batch shape compiles (and captures) once more, so
pair it with ``data.pad_to_multiple`` to keep the shapes few; on a CPU, ``reduce-overhead`` runs as ``default``.
Measured on and off by ``bench/gpu_check.py`` (docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from seq2seq_lit.errors import ConfigError

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDAGRAPH_MODES = ("reduce-overhead", "max-autotune")
RECOMPILE_LIMIT = 64
"""Graphs kept per compiled function (torch's default is 8): one per (batch, source, target) shape met."""


def check_compile_mode(mode: str | None) -> None:
    """Raises ConfigError unless ``mode`` is None or one of :data:`COMPILE_MODES`."""
    if mode is not None and mode not in COMPILE_MODES:
        raise ConfigError(f"model.compile={mode!r}; fix: use null (eager) or one of {', '.join(COMPILE_MODES)}")


def compile_step(fn: Callable[..., tuple[Any, ...]], mode: str) -> Callable[..., tuple[Any, ...]]:
    """``fn`` compiled in ``mode`` (see :data:`COMPILE_MODES`), static shapes.

    In the CUDA-graph modes a graph's outputs live in memory the next replay overwrites, so each call first marks a
    new step (``torch.compiler.cudagraph_mark_step_begin``) and hands back copies of the tensors ``fn`` returns
    (autograd flows through the copy): a logged loss can then be read after the next step.

    Raises:
        ConfigError: ``mode`` is not one of :data:`COMPILE_MODES`.
    """
    check_compile_mode(mode)
    from seq2seq_lit.utils.lightning_internals import raise_recompile_limit

    raise_recompile_limit(RECOMPILE_LIMIT)
    compiled = torch.compile(fn, mode=mode, dynamic=False)
    if mode not in CUDAGRAPH_MODES:
        return compiled

    def step(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
        torch.compiler.cudagraph_mark_step_begin()
        return tuple(x.clone() if isinstance(x, torch.Tensor) else x for x in compiled(*args, **kwargs))

    return step
