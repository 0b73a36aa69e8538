"""The attention interface shared by every score function.

Shapes: B batch, S source length, T target steps (1 for a single decoder step), Q query size (decoder hidden),
K key size (encoder output, also the value size), A attention hidden size.

An attention is a score function behind one template (Luong et al. 2015, Eq. 7; Bahdanau et al. 2015, Eq. 6):

    energy  e_ts = score(q_t, k_s)                          (B, T, S)   raw, unmasked
    weights a_ts = softmax_s(e_ts masked on source padding)   (B, T, S)
    context c_t  = sum_s a_ts v_s                            (B, T, K)

The keys are prepared once per batch (:meth:`Attention.prepare`, e.g. projected by W_a) and the cache is passed to
every call, so one decoder step (T = 1) and all steps at once use the same code. Masking and the softmax live here
only: subclasses implement :meth:`Attention.project_keys` and :meth:`Attention.score`, and two optional hooks:
:meth:`Attention.window` (local attention, Luong et al. 2015, Sec. 3.2) and :meth:`Attention.add_coverage` (Tu et al.
2016).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn


class AttentionCache(NamedTuple):
    """Per-batch attention memory.

    Attributes:
        keys: encoder outputs ``(B, S, K)``, also used as the values.
        proj_keys: the keys as the score function needs them (e.g. ``W_a k``), ``(B, S, *)``.
        src_pad_mask: True on source padding, ``(B, S)``.
    """

    keys: Tensor
    proj_keys: Tensor
    src_pad_mask: Tensor

    def index_select(self, index: Tensor) -> "AttentionCache":
        """Select (or repeat) batch rows, e.g. to expand sentences into beams. ``index``: ``(B',)``."""
        return AttentionCache(*(t.index_select(0, index) for t in self))

    @property
    def src_lengths(self) -> Tensor:
        """Real source tokens per sentence, ``(B,)`` (padding comes after them)."""
        return (~self.src_pad_mask).sum(-1)


class Window(NamedTuple):
    """Where a local attention may look (Luong et al. 2015, Sec. 3.2).

    Attributes:
        outside: True outside ``[p_t - D, p_t + D]``, ``(B, T, S)``; masked like padding before the softmax.
        scale: multiplies the weights after the softmax, ``(B, T, S)`` (the local-p Gaussian, Eq. 10), or None.
    """

    outside: Tensor
    scale: Tensor | None = None


class Attention(nn.Module):
    """Base class: prepare the keys once, score queries against them, mask, normalize, and read the values.

    Args:
        query_size: Q, the size of the decoder state used as the query.
        key_size: K, the size of the encoder outputs (keys and values).

    Attributes:
        context_size: the size of the context the decoder receives; K, or 0 for no attention.
        coverage: whether the score reads the attention accumulated over the previous steps (Tu et al. 2016); the
            decoder then carries that sum and passes it to every call.
    """

    def __init__(self, query_size: int, key_size: int) -> None:
        super().__init__()
        self.query_size = query_size
        self.key_size = key_size
        self.context_size = key_size
        self.coverage = False

    @property
    def needs_step_loop(self) -> bool:
        """Whether step t needs the weights of steps < t (coverage), so all steps cannot be scored in one call."""
        return self.coverage

    def prepare(self, keys: Tensor, src_pad_mask: Tensor) -> AttentionCache:
        """Project the keys once per batch. ``keys``: ``(B, S, K)``; ``src_pad_mask``: ``(B, S)``, True on padding."""
        return AttentionCache(keys, self.project_keys(keys), src_pad_mask)

    def project_keys(self, keys: Tensor) -> Tensor:
        """The keys in the form :meth:`score` uses, ``(B, S, *)``; the identity unless a subclass overrides it."""
        return keys

    def score(self, query: Tensor, proj_keys: Tensor) -> Tensor:
        """Raw energies ``(B, T, S)`` of ``query`` ``(B, T, Q)`` against ``proj_keys`` ``(B, S, *)``."""
        raise NotImplementedError

    def window(self, query: Tensor, cache: AttentionCache, step: int) -> Window | None:
        """Where each query row may attend (local attention); None, the default, is everywhere (global attention)."""
        return None

    def add_coverage(self, proj_keys: Tensor, coverage: Tensor) -> Tensor:
        """``proj_keys`` ``(B, S, *)`` with the accumulated weights ``coverage`` ``(B, S)`` mixed in."""
        raise NotImplementedError

    def forward(
        self, query: Tensor, cache: AttentionCache, step: int = 0, coverage: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Attend with ``query`` ``(B, T, Q)``; returns the context ``(B, T, context_size)`` and weights ``(B, T, S)``.

        The energies are masked with -inf on source padding (and outside a local window) and normalized in float32,
        so the weights are exactly 0 there and sum to 1 under autocast too (every row keeps at least one real source
        token). Only local-p rescales them afterwards (Luong et al. 2015, Eq. 10), so its rows sum to at most 1.

        Args:
            step: the target step index of the first query row; row i is step ``step + i`` (read by local-m).
            coverage: the weights summed over the steps before ``step``, ``(B, S)``, for an attention built with
                coverage (None: no step yet); the same for every row, so pass one row at a time.

        Raises:
            ValueError: if ``coverage`` is given to an attention built without it.
        """
        proj_keys = cache.proj_keys
        if coverage is not None:
            if not self.coverage:
                raise ValueError(f"{type(self).__name__} was built without coverage but was given one")
            proj_keys = self.add_coverage(proj_keys, coverage)
        energy = self.score(query, proj_keys).float()
        excluded = cache.src_pad_mask.unsqueeze(1)  # (B, 1, S)
        window = self.window(query, cache, step)
        if window is not None:
            excluded = excluded | window.outside  # (B, T, S)
        weights = torch.softmax(energy.masked_fill(excluded, float("-inf")), dim=-1)
        if window is not None and window.scale is not None:
            weights = weights * window.scale.float()
        context = torch.bmm(weights.to(cache.keys.dtype), cache.keys)
        return context, weights
