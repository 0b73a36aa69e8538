"""Greedy decoding, batched over sentences.

Shapes: B batch, S source length, T' decoded steps, V target vocabulary.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Hypotheses, Search


class GreedySearch(Search):
    """Pick the most probable token at each step until every sentence has emitted EOS or reached its length cap.

    Args: see :class:`~seq2seq_lit.search.base.Search`.
    """

    @torch.no_grad()
    def __call__(self, model, src: Tensor, src_lengths: Tensor, bos_id: int, eos_id: int) -> Hypotheses:
        """Decode ``src`` ``(B, S)`` with lengths ``(B,)``; ``scores`` are summed log-probabilities, EOS included."""
        cache, state = model.encode(src, src_lengths)
        batch = src.size(0)
        prev = src.new_full((batch,), bos_id)
        finished = torch.zeros(batch, dtype=torch.bool, device=src.device)
        lengths = torch.zeros(batch, dtype=torch.long, device=src.device)
        scores = torch.zeros(batch, device=src.device)
        tokens, weights = [], []
        for step in range(self.length_cap(src_lengths)):
            log_probs, state, step_weights = model.decode_step(prev, state, cache)
            step_scores, prev = self.block_early_eos(log_probs, step, eos_id).max(dim=-1)
            prev = prev.masked_fill(finished, model.pad_id)  # finished rows only emit padding
            scores += step_scores.masked_fill(finished, 0.0)
            lengths += (~finished & prev.ne(eos_id)).long()
            tokens.append(prev)
            weights.append(step_weights.masked_fill(finished.unsqueeze(-1), 0.0))
            finished |= prev.eq(eos_id)
            if finished.all():
                break
        return Hypotheses(torch.stack(tokens, 1), lengths, scores, torch.stack(weights, 1))
