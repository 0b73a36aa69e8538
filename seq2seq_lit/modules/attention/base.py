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

from typing import ClassVar, NamedTuple

import torch
from torch import Tensor, nn


class AttentionCache(NamedTuple):
    """Per-batch attention memory.

    Attributes:
        keys: encoder outputs ``(B, S, K)``, also used as the values.
        proj_keys: the keys as the score function needs them (e.g. ``W_a k``), ``(B, S, *)``.
        src_pad_mask: True on source padding, ``(B, S)``.
        group: G, query rows per cache row: 1, or the beam size after :meth:`repeat_interleave` (query row
            ``b * G + k`` reads cache row ``b``).
        groupable: whether the attention scores query rows independently of each other, its step index and coverage,
            so that G query rows can share one cache row (see :attr:`Attention.groups_queries`).
    """

    keys: Tensor
    proj_keys: Tensor
    src_pad_mask: Tensor
    group: int = 1
    groupable: bool = False

    def index_select(self, index: Tensor) -> "AttentionCache":
        """Select (or repeat) query rows ``index`` ``(B',)``, e.g. to drop finished sentences.

        With ``group`` G > 1, ``index`` must list G rows of each kept sentence in turn, as beam search's reorderings
        do (a beam stays with its sentence); the cache keeps one row per sentence, ``index[::G] // G``.
        """
        rows = index if self.group == 1 else index[:: self.group].div(self.group, rounding_mode="floor")
        keys, proj_keys, src_pad_mask = (t.index_select(0, rows) for t in self[:3])
        return self._replace(keys=keys, proj_keys=proj_keys, src_pad_mask=src_pad_mask)

    def repeat_interleave(self, repeats: int) -> "AttentionCache":
        """Each query row ``repeats`` times in turn, e.g. a sentence's beams: a cache shared by the repeats where the
        attention allows it (``groupable``: no copy, and one batched product per sentence), else copied rows."""
        if self.groupable:
            return self._replace(group=self.group * repeats)
        rows = torch.arange(self.keys.size(0) * self.group, device=self.keys.device)
        return self.index_select(rows.repeat_interleave(repeats))

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
        is_score: whether local and multi-head attention can be built on this class (``score=NAME``, the name of
            its ``model/attention`` file); False for those that wrap a score or have none.
    """

    is_score: ClassVar[bool] = True

    def __init__(self, query_size: int, key_size: int) -> None:
        super().__init__()
        self.query_size = query_size
        self.key_size = key_size
        self.context_size = key_size
        self.coverage = False

    @property
    def groups_queries(self) -> bool:
        """Whether query rows can share a cache row (:meth:`AttentionCache.repeat_interleave`): the scores read
        neither coverage nor a window (local attention's window depends on the step and the row's source)."""
        return not self.coverage and type(self).window is Attention.window

    @property
    def needs_step_loop(self) -> bool:
        """Whether step t needs the weights of steps < t (coverage), so all steps cannot be scored in one call."""
        return self.coverage

    def prepare(self, keys: Tensor, src_pad_mask: Tensor) -> AttentionCache:
        """Project the keys once per batch. ``keys``: ``(B, S, K)``; ``src_pad_mask``: ``(B, S)``, True on padding."""
        return AttentionCache(keys, self.project_keys(keys), src_pad_mask, groupable=self.groups_queries)

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

        With a grouped cache (``cache.group`` G > 1) the G query rows of each cache row are scored together as
        ``(B / G, G T, Q)``.

        Raises:
            ValueError: if ``coverage`` is given to an attention built without it.
        """
        if cache.group > 1:
            rows, steps = query.shape[:2]
            grouped = query.reshape(rows // cache.group, cache.group * steps, query.size(-1))
            context, weights = self(grouped, cache._replace(group=1), step, coverage)
            return context.reshape(rows, steps, -1), weights.reshape(rows, steps, -1)
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
