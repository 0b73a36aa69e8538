"""Vaswani et al. 2017, "Attention Is All You Need", scaled dot-product score.

Shapes as in :mod:`seq2seq_lit.modules.attention.base`.
"""

from __future__ import annotations

import math

from torch import Tensor

from .luong import DotAttention


class ScaledDotAttention(DotAttention):
    """Scaled dot-product score: ``e_ts = q_t^T k_s / sqrt(K)`` (Vaswani et al. 2017, Eq. 1). No parameters.

    Dividing by ``sqrt(K)`` keeps the energies' variance near 1 for unit-variance inputs, so the softmax does not
    saturate as K grows.

    Raises:
        ConfigError: if the query and key sizes differ (as :class:`DotAttention`).
    """

    def score(self, query: Tensor, proj_keys: Tensor) -> Tensor:
        return super().score(query, proj_keys) / math.sqrt(self.key_size)  # (B, T, S)
