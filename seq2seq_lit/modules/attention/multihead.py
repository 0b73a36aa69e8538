"""Several heads of one score function, their contexts concatenated and projected (after Vaswani et al. 2017,
Sec. 3.2.2, with any score in place of the scaled dot product).

Shapes as in :mod:`seq2seq_lit.modules.attention.base`; N heads.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ...errors import ConfigError
from .base import Attention, AttentionCache
from .scores import SCORES, build_score


class MultiHeadAttention(Attention):
    """``context = W_o [c^1_t; ...; c^N_t]``, each ``c^n_t`` from its own copy of a score, with its own parameters.

    Each head masks and normalizes as any attention does. The returned weights are the heads' mean, so their rows
    still sum to 1 and are 0 on padding.

    Args:
        score: the heads' score function, a name of :data:`~seq2seq_lit.modules.attention.scores.SCORES` that has
            parameters (heads of ``dot`` or ``scaled_dot`` would all be the same).
        heads: N.
        score_options: constructor options of that score, e.g. ``{"hidden_size": 64}`` for ``additive``.

    Raises:
        ConfigError: for ``heads < 1``, an unknown score or option, or a score without parameters (listing the
            valid ones).
    """

    is_score = False

    def __init__(
        self,
        query_size: int,
        key_size: int,
        score: str = "general",
        heads: int = 4,
        score_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(query_size, key_size)
        if heads < 1:
            raise ConfigError(f"multihead attention needs heads >= 1, got {heads}")
        self.heads = nn.ModuleList(build_score(score, query_size, key_size, score_options) for _ in range(heads))
        if not any(p.requires_grad for p in self.heads[0].parameters()):
            with_parameters = [n for n in SCORES if n not in ("dot", "scaled_dot")]
            raise ConfigError(
                f"the heads of a multihead {score} attention would all be the same (the score has no parameters); "
                f"valid choices: {', '.join(with_parameters)}"
            )
        self.output_layer = nn.Linear(heads * key_size, key_size, bias=False)  # W_o
        self.coverage = self.heads[0].coverage

    def prepare(self, keys: Tensor, src_pad_mask: Tensor) -> AttentionCache:
        # one tensor (B, S, N * P) keeps AttentionCache.index_select working; forward splits it back per head
        proj_keys = [head.prepare(keys, src_pad_mask).proj_keys for head in self.heads]
        return AttentionCache(keys, torch.cat(proj_keys, dim=-1), src_pad_mask, groupable=self.groups_queries)

    @property
    def groups_queries(self) -> bool:
        return all(head.groups_queries for head in self.heads)

    def forward(
        self, query: Tensor, cache: AttentionCache, step: int = 0, coverage: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """As :meth:`Attention.forward`: context ``(B, T, K)`` and the heads' mean weights ``(B, T, S)``."""
        contexts, weights = [], []
        for head, proj_keys in zip(self.heads, cache.proj_keys.tensor_split(len(self.heads), dim=-1)):
            head_context, head_weights = head(query, cache._replace(proj_keys=proj_keys), step, coverage)
            contexts.append(head_context)  # (B, T, K)
            weights.append(head_weights)  # (B, T, S)
        return self.output_layer(torch.cat(contexts, dim=-1)), torch.stack(weights).mean(0)
