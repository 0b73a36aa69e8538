"""Luong et al. 2015, "Effective Approaches to Attention-based Neural Machine Translation", Eq. 8 score functions.

Shapes as in :mod:`seq2seq_lit.modules.attention.base`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import Attention


class GeneralAttention(Attention):
    """Luong "general" (bilinear) score: ``e_ts = h_t^T W_a h_s`` (Luong et al. 2015, Eq. 8).

    ``W_a`` ``(Q, K)`` is applied to the keys once per batch, so each step costs one ``bmm``.
    """

    def __init__(self, query_size: int, key_size: int) -> None:
        super().__init__(query_size, key_size)
        self.key_layer = nn.Linear(key_size, query_size, bias=False)

    def project_keys(self, keys: Tensor) -> Tensor:
        return self.key_layer(keys)  # (B, S, Q)

    def score(self, query: Tensor, proj_keys: Tensor) -> Tensor:
        return torch.bmm(query, proj_keys.transpose(1, 2))  # (B, T, S)
