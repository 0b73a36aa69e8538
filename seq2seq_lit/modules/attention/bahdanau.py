"""Bahdanau et al. 2015, "Neural Machine Translation by Jointly Learning to Align and Translate", additive score,
optionally with coverage (Tu et al. 2016, "Modeling Coverage for Neural Machine Translation").

Shapes as in :mod:`seq2seq_lit.modules.attention.base`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import Attention


class AdditiveAttention(Attention):
    """Additive (MLP) score: ``e_ts = v_a^T tanh(W_a q_t + U_a k_s)`` (Bahdanau et al. 2015, Eq. 6 and App. A.1.2).

    ``U_a k`` is computed once per batch. Scoring all T steps at once builds a ``(B, T, S, A)`` tensor.

    With coverage (Tu et al. 2016, Sec. 3, linguistic coverage without fertility; Mi et al. 2016) the score also
    reads ``cov_s``, the weights position s received at the previous steps: ``v_a^T tanh(W_a q_t + U_a k_s + w_c
    cov_s)``, which lets the model learn not to attend twice to what it already translated. It makes each step depend
    on the previous ones, so the decoder loops over the steps.

    Args:
        hidden_size: A, the size of the MLP's hidden layer; defaults to the query size.
        coverage: read the accumulated attention (see above).
    """

    def __init__(self, query_size: int, key_size: int, hidden_size: int | None = None, coverage: bool = False) -> None:
        super().__init__(query_size, key_size)
        hidden_size = hidden_size or query_size
        self.query_layer = nn.Linear(query_size, hidden_size, bias=False)
        self.key_layer = nn.Linear(key_size, hidden_size, bias=False)
        self.energy_layer = nn.Linear(hidden_size, 1, bias=False)  # v_a
        self.coverage = coverage
        if coverage:
            self.coverage_layer = nn.Linear(1, hidden_size, bias=False)  # w_c

    def project_keys(self, keys: Tensor) -> Tensor:
        return self.key_layer(keys)  # (B, S, A)

    def add_coverage(self, proj_keys: Tensor, coverage: Tensor) -> Tensor:
        # coverage enters next to U_a k_s, so it costs one (B, S, A) addition per step
        return proj_keys + self.coverage_layer(coverage.unsqueeze(-1).to(proj_keys.dtype))  # (B, S, A)

    def score(self, query: Tensor, proj_keys: Tensor) -> Tensor:
        proj_query = self.query_layer(query)  # (B, T, A)
        hidden = torch.tanh(proj_query.unsqueeze(2) + proj_keys.unsqueeze(1))  # (B, T, S, A)
        return self.energy_layer(hidden).squeeze(-1)  # (B, T, S)
