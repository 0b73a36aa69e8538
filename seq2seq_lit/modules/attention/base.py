"""The attention interface shared by every score function.

Shapes: B batch, S source length, T target steps (1 for a single decoder step), Q query size (decoder hidden),
K key size (encoder output, also the value size), A attention hidden size.

An attention is a score function behind one template (Luong et al. 2015, Eq. 7; Bahdanau et al. 2015, Eq. 6):

    energy  e_ts = score(q_t, k_s)                        (B, T, S)   raw, unmasked
    weights a_ts = softmax_s(e_ts masked on source padding) (B, T, S)
    context c_t  = sum_s a_ts v_s                          (B, T, K)

The keys are prepared once per batch (:meth:`Attention.prepare`, e.g. projected by W_a) and the cache is passed to
every call, so one decoder step (T = 1) and all steps at once use the same code. Masking and the softmax live here
only: subclasses implement :meth:`Attention.prepare` and :meth:`Attention.score`.
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


class Attention(nn.Module):
    """Base class: prepare the keys once, score queries against them, mask, normalize, and read the values.

    Args:
        query_size: Q, the size of the decoder state used as the query.
        key_size: K, the size of the encoder outputs (keys and values).
    """

    def __init__(self, query_size: int, key_size: int) -> None:
        super().__init__()
        self.query_size = query_size
        self.key_size = key_size

    def prepare(self, keys: Tensor, src_pad_mask: Tensor) -> AttentionCache:
        """Project the keys once per batch. ``keys``: ``(B, S, K)``; ``src_pad_mask``: ``(B, S)``, True on padding."""
        return AttentionCache(keys, self.project_keys(keys), src_pad_mask)

    def project_keys(self, keys: Tensor) -> Tensor:
        """The keys in the form :meth:`score` uses, ``(B, S, *)``; the identity unless a subclass overrides it."""
        return keys

    def score(self, query: Tensor, proj_keys: Tensor) -> Tensor:
        """Raw energies ``(B, T, S)`` of ``query`` ``(B, T, Q)`` against ``proj_keys`` ``(B, S, *)``."""
        raise NotImplementedError

    def forward(self, query: Tensor, cache: AttentionCache) -> tuple[Tensor, Tensor]:
        """Attend with ``query`` ``(B, T, Q)``; returns the context ``(B, T, K)`` and the weights ``(B, T, S)``.

        The energies are masked with -inf on source padding and normalized in float32, so the weights are exactly
        0 on padding and sum to 1 under autocast too (every row has at least one real source token).
        """
        energy = self.score(query, cache.proj_keys)
        energy = energy.float().masked_fill(cache.src_pad_mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(energy, dim=-1)
        context = torch.bmm(weights.to(cache.keys.dtype), cache.keys)
        return context, weights
