"""No attention: the plain encoder-decoder baselines of Sutskever et al. 2014 and Cho et al. 2014, for comparisons.

Shapes as in :mod:`seq2seq_lit.modules.attention.base`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Attention, AttentionCache


class NoAttention(Attention):
    """The decoder reads no context: the source reaches it only through the bridge (the decoder's first state).

    ``context_size`` is 0, so the decoders drop the context from their layers: Luong's attentional hidden becomes
    ``tanh(W_c h_t)`` and Bahdanau's RNN reads ``y_{t-1}`` alone. The weights are all zeros (nothing is attended; an
    attention heatmap stays blank), so unlike every other attention they do not sum to 1.
    """

    is_score = False

    def __init__(self, query_size: int, key_size: int) -> None:
        super().__init__(query_size, key_size)
        self.context_size = 0

    def project_keys(self, keys: Tensor) -> Tensor:
        return keys[..., :0]  # (B, S, 0): nothing to precompute

    def forward(
        self, query: Tensor, cache: AttentionCache, step: int = 0, coverage: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Context ``(B, T, 0)`` and zero weights ``(B, T, S)`` for ``query`` ``(B, T, Q)``; see the class doc."""
        batch, steps = query.shape[:2]
        context = cache.keys.new_zeros(batch, steps, 0)
        weights = cache.keys.new_zeros(batch, steps, cache.keys.size(1), dtype=torch.float32)
        return context, weights
