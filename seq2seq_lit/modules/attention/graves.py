"""Graves et al. 2014, "Neural Turing Machines", content-based addressing as an attention score.

Shapes as in :mod:`seq2seq_lit.modules.attention.base`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError
from .base import Attention


class CosineAttention(Attention):
    """Cosine score with a sharpness: ``e_ts = beta * cos(W_q q_t, k_s)`` (Graves et al. 2014, Sec. 3.3.1, Eq. 5-6).

    ``W_q`` ``(K, Q)`` maps the query to the key size when Q != K and is the identity otherwise. The energies lie in
    ``[-beta, beta]``, so ``beta`` bounds how peaked the weights can be. A learned sharpness is ``beta = sharpness *
    exp(g)`` with one learned scalar ``g`` starting at 0: it stays positive, and the model's uniform parameter
    init (``init_range``) moves it only by a factor ``exp(+-init_range)``.

    Args:
        sharpness: beta, or its initial value when learned.
        learn_sharpness: learn ``g``; False keeps beta fixed.

    Raises:
        ConfigError: if ``sharpness`` is not positive.
    """

    def __init__(self, query_size: int, key_size: int, sharpness: float = 5.0, learn_sharpness: bool = True) -> None:
        super().__init__(query_size, key_size)
        if sharpness <= 0:
            raise ConfigError(f"cosine attention needs sharpness > 0, got {sharpness}; fix: e.g. sharpness=5")
        self.query_layer = nn.Linear(query_size, key_size, bias=False) if query_size != key_size else nn.Identity()
        self.base_sharpness = sharpness
        self.log_gain = nn.Parameter(torch.zeros(())) if learn_sharpness else None  # g

    @property
    def sharpness(self) -> Tensor | float:
        """beta."""
        return self.base_sharpness if self.log_gain is None else self.base_sharpness * self.log_gain.exp()

    def project_keys(self, keys: Tensor) -> Tensor:
        return F.normalize(keys, dim=-1)  # (B, S, K) unit rows; padding rows stay 0

    def score(self, query: Tensor, proj_keys: Tensor) -> Tensor:
        unit_query = F.normalize(self.query_layer(query), dim=-1)  # (B, T, K)
        return self.sharpness * torch.bmm(unit_query, proj_keys.transpose(1, 2))  # (B, T, S)
