"""Greedy decoding, batched over sentences.

Shapes: B batch, S source length, T' decoded steps, V target vocabulary.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Hypotheses, Search


class GreedySearch(Search):
    """Pick the most probable token at each step until every sentence has emitted EOS or reached its length cap.

    A sentence leaves the batch once it has emitted EOS (its rows of the decoder state and the attention cache are
    dropped), so the steps after it cost nothing for it: a batch's tail, where one long sentence is still decoding,
    runs with one row instead of B.

    Subclasses change :meth:`pick` (e.g. :class:`~seq2seq_lit.search.sample.SampleSearch` draws the token) and may
    decode ``n_best`` rows per sentence.

    Args: see :class:`~seq2seq_lit.search.base.Search`.
    """

    @torch.no_grad()
    def __call__(self, model, src: Tensor, src_lengths: Tensor, bos_id: int, eos_id: int) -> Hypotheses:
        """Decode ``src`` ``(B, S)`` with lengths ``(B,)``; ``scores`` are summed log-probabilities, EOS included."""
        cache, state = model.encode(src, src_lengths)
        if self.n_best > 1:  # N rows per sentence, sentence-major; copied, since rows leave one by one at EOS
            rows = torch.arange(src.size(0), device=src.device).repeat_interleave(self.n_best)
            cache, state, src = cache.index_select(rows), state.index_select(rows), src.index_select(0, rows)
        batch, cap, device = src.size(0), self.length_cap(src_lengths), src.device
        tokens = src.new_full((batch, cap), model.pad_id)  # finished rows keep padding after their EOS
        attention = torch.zeros(batch, cap, src.size(1), device=device)
        lengths = torch.zeros(batch, dtype=torch.long, device=device)
        scores = torch.zeros(batch, device=device)
        alive = torch.arange(batch, device=device)  # the batch rows still decoding
        prev = src.new_full((batch,), bos_id)
        steps = 0
        for step in range(cap):
            log_probs, state, step_weights = model.decode_step(prev, state, cache)
            step_scores, prev = self.pick(self.block_early_eos(log_probs, step, eos_id))
            tokens[alive, step] = prev
            attention[alive, step] = step_weights.float()
            scores.index_add_(0, alive, step_scores.float())
            ended = prev.eq(eos_id)
            lengths.index_add_(0, alive, (~ended).long())
            steps = step + 1
            if ended.any():
                keep = (~ended).nonzero().squeeze(1)
                if keep.numel() == 0:
                    break
                alive, prev = alive[keep], prev[keep]
                state, cache = state.index_select(keep), cache.index_select(keep)
        return Hypotheses(tokens[:, :steps], lengths, scores, attention[:, :steps], n_best=self.n_best)

    def pick(self, log_probs: Tensor) -> tuple[Tensor, Tensor]:
        """The next token of each row from the log-probabilities ``(B, V)``: its log-probability and id, ``(B,)`` each."""
        return log_probs.max(dim=-1)
