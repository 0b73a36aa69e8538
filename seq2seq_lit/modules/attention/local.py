"""Luong et al. 2015, Sec. 3.2, local attention: any score, restricted to a window of 2D + 1 source positions.

Shapes as in :mod:`seq2seq_lit.modules.attention.base`; D is the window radius.

At target step t the attention looks only at the source positions s with ``|s - p_t| <= D`` around a centre p_t:
the energies elsewhere are masked like padding (in :meth:`Attention.forward`), so their weights are exactly 0.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ...errors import ConfigError
from .base import Attention, AttentionCache, Window
from .scores import build_score


class LocalAttention(Attention):
    """Local attention around centres p_t given by a subclass; the energies come from a named score.

    Args:
        score: the score function, a name of :data:`~seq2seq_lit.modules.attention.scores.SCORES`.
        window: D, the window radius (Luong et al. use 10).
        score_options: constructor options of that score, e.g. ``{"coverage": True}`` for ``concat``.

    Raises:
        ConfigError: for ``window < 1``, or an unknown score or option (listing the valid ones).
    """

    is_score = False

    def __init__(
        self,
        query_size: int,
        key_size: int,
        score: str = "general",
        window: int = 10,
        score_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(query_size, key_size)
        if window < 1:
            # D >= 1 keeps a real source token in every window, so no row is masked entirely
            raise ConfigError(f"local attention needs window >= 1 (the radius D), got {window}; fix: e.g. window=10")
        self.radius = window
        self.inner = build_score(score, query_size, key_size, score_options)
        self.coverage = self.inner.coverage

    def prepare(self, keys: Tensor, src_pad_mask: Tensor) -> AttentionCache:
        cache = self.inner.prepare(keys, src_pad_mask)  # with the score's own checks (location's maximum length)
        return cache._replace(groupable=self.groups_queries)  # the window keeps query rows apart

    def project_keys(self, keys: Tensor) -> Tensor:
        return self.inner.project_keys(keys)

    def score(self, query: Tensor, proj_keys: Tensor) -> Tensor:
        return self.inner.score(query, proj_keys)

    def add_coverage(self, proj_keys: Tensor, coverage: Tensor) -> Tensor:
        return self.inner.add_coverage(proj_keys, coverage)

    def centres(self, query: Tensor, cache: AttentionCache, step: int) -> Tensor:
        """The window centres p_t ``(B, T)`` of ``query`` ``(B, T, Q)``, whose first row is target step ``step``."""
        raise NotImplementedError

    def scale(self, distance: Tensor) -> Tensor | None:
        """What multiplies the weights at ``distance = s - p_t`` ``(B, T, S)`` after the softmax; None: nothing."""
        return None

    def window(self, query: Tensor, cache: AttentionCache, step: int) -> Window:
        positions = torch.arange(cache.keys.size(1), device=query.device, dtype=torch.float32)  # (S,)
        distance = positions - self.centres(query, cache, step).float().unsqueeze(-1)  # (B, T, S)
        return Window(distance.abs() > self.radius, self.scale(distance))


class MonotonicLocalAttention(LocalAttention):
    """Local-m: ``p_t = t`` (Luong et al. 2015, Sec. 3.2), assuming source and target roughly aligned monotonically.

    p_t is clamped to each sentence's last real position ``S_i - 1``, so that steps past the end of a short source
    still attend to its last D + 1 tokens instead of to a window of padding only.
    """

    def centres(self, query: Tensor, cache: AttentionCache, step: int) -> Tensor:
        steps = step + torch.arange(query.size(1), device=query.device)  # (T,)
        last = cache.src_lengths.unsqueeze(-1) - 1  # (B, 1)
        return torch.minimum(steps.unsqueeze(0), last)  # (B, T)


class PredictiveLocalAttention(LocalAttention):
    """Local-p: ``p_t = S_i sigmoid(v_p^T tanh(W_p h_t))`` (Luong et al. 2015, Eq. 9), S_i each sentence's length.

    The weights inside the window are then scaled by a Gaussian centred on p_t, ``a_t(s) = align(h_t, h_s)
    exp(-(s - p_t)^2 / (2 sigma^2))`` with ``sigma = D / 2`` (Eq. 10). Following the paper the rows are not
    renormalized, so they sum to less than 1; the Gaussian is what lets p_t, hence W_p and v_p, learn.

    Args:
        hidden_size: A, the size of ``W_p``'s output; defaults to the query size.
        Others as :class:`LocalAttention`.
    """

    def __init__(
        self,
        query_size: int,
        key_size: int,
        score: str = "general",
        window: int = 10,
        score_options: Mapping[str, Any] | None = None,
        hidden_size: int | None = None,
    ) -> None:
        super().__init__(query_size, key_size, score, window, score_options)
        hidden_size = hidden_size or query_size
        self.position_layer = nn.Sequential(
            nn.Linear(query_size, hidden_size, bias=False), nn.Tanh(), nn.Linear(hidden_size, 1, bias=False)
        )  # v_p^T tanh(W_p h_t)

    def centres(self, query: Tensor, cache: AttentionCache, step: int) -> Tensor:
        relative = torch.sigmoid(self.position_layer(query).squeeze(-1).float())  # (B, T) in (0, 1)
        return cache.src_lengths.unsqueeze(-1) * relative  # (B, T)

    def scale(self, distance: Tensor) -> Tensor:
        sigma = self.radius / 2
        return torch.exp(-distance.square() / (2 * sigma**2))
