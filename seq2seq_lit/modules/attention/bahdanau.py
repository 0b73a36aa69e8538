"""Bahdanau et al. 2015, "Neural Machine Translation by Jointly Learning to Align and Translate", additive score.

Shapes as in :mod:`seq2seq_lit.modules.attention.base`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import Attention


class AdditiveAttention(Attention):
    """Additive (MLP) score: ``e_ts = v_a^T tanh(W_a q_t + U_a k_s)`` (Bahdanau et al. 2015, Eq. 6 and App. A.1.2).

    ``U_a k`` is computed once per batch. Scoring all T steps at once builds a ``(B, T, S, A)`` tensor.

    Args:
        hidden_size: A, the size of the MLP's hidden layer; defaults to the query size.
    """

    def __init__(self, query_size: int, key_size: int, hidden_size: int | None = None) -> None:
        super().__init__(query_size, key_size)
        hidden_size = hidden_size or query_size
        self.query_layer = nn.Linear(query_size, hidden_size, bias=False)
        self.key_layer = nn.Linear(key_size, hidden_size, bias=False)
        self.energy_layer = nn.Linear(hidden_size, 1, bias=False)  # v_a

    def project_keys(self, keys: Tensor) -> Tensor:
        return self.key_layer(keys)  # (B, S, A)

    def score(self, query: Tensor, proj_keys: Tensor) -> Tensor:
        proj_query = self.query_layer(query)  # (B, T, A)
        hidden = torch.tanh(proj_query.unsqueeze(2) + proj_keys.unsqueeze(1))  # (B, T, S, A)
        return self.energy_layer(hidden).squeeze(-1)  # (B, T, S)
