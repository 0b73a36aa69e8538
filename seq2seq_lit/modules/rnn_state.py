"""Helpers for recurrent states, which are a tensor (RNN, GRU) or an ``(h, c)`` pair (LSTM), each ``(L, B, H)``."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Union

import torch
from torch import Tensor, nn

RNNState = Union[Tensor, tuple[Tensor, Tensor]]

RNN_TYPES: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


def rnn_class(rnn_type: str) -> type[nn.RNNBase]:
    """The ``torch.nn`` class for ``rnn_type``.

    Raises:
        ConfigError: for an unknown type, listing the valid ones.
    """
    from ..errors import ConfigError

    try:
        return RNN_TYPES[rnn_type]
    except KeyError:
        raise ConfigError(f"unknown rnn_type {rnn_type!r}; valid choices: {', '.join(RNN_TYPES)}") from None


def map_state(fn: Callable[[Tensor], Tensor], state: RNNState) -> RNNState:
    """Apply ``fn`` to the tensor, or to both tensors of an LSTM state."""
    if isinstance(state, tuple):
        return tuple(fn(s) for s in state)  # type: ignore[return-value]
    return fn(state)


def top_layer(state: RNNState) -> Tensor:
    """The top layer's hidden state ``(B, H)`` (the ``h`` of an LSTM state)."""
    h = state[0] if isinstance(state, tuple) else state
    return h[-1]


@contextmanager
def single_step_kernels() -> Iterator[None]:
    """Context for loops that call an RNN one time step at a time.

    oneDNN's fused RNN kernel, which PyTorch picks on CPU, has a high fixed cost per call that pays off over long
    sequences but not for one step (figures in docs/extending.md), so step loops use the native kernel. Elsewhere
    (encoder, one-call unroll) the flag is left as it is.
    """
    enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = enabled
