"""Greedy decoding, batched over sentences.

Shapes: B batch, S source length, T' decoded steps, V target vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..modules import Seq2Seq


@dataclass
class Hypotheses:
    """Decoded sentences.

    Attributes:
        tokens: ``(B, T')`` token ids without BOS; each row ends with EOS (or is cut at the length cap), then padding.
        lengths: ``(B,)`` number of tokens before EOS.
        scores: ``(B,)`` sum of the log-probabilities of the emitted tokens, EOS included.
        attention: ``(B, T', S)`` attention weights of each emitted token.
    """

    tokens: Tensor
    lengths: Tensor
    scores: Tensor
    attention: Tensor

    def token_lists(self) -> list[list[int]]:
        """Each hypothesis as a list of ids, EOS and padding removed."""
        return [row[:n].tolist() for row, n in zip(self.tokens, self.lengths.tolist())]


class GreedySearch:
    """Pick the most probable token at each step until every sentence has emitted EOS or reached its length cap.

    Args:
        max_length: absolute cap on emitted tokens.
        max_length_ratio, max_length_offset: per batch, at most ``ratio * longest source + offset`` steps.
    """

    def __init__(self, max_length: int = 200, max_length_ratio: float = 1.5, max_length_offset: int = 10) -> None:
        self.max_length = max_length
        self.max_length_ratio = max_length_ratio
        self.max_length_offset = max_length_offset

    def length_cap(self, src_lengths: Tensor) -> int:
        return min(self.max_length, int(self.max_length_ratio * int(src_lengths.max())) + self.max_length_offset)

    @torch.no_grad()
    def __call__(self, model: Seq2Seq, src: Tensor, src_lengths: Tensor, bos_id: int, eos_id: int) -> Hypotheses:
        """Decode ``src`` ``(B, S)`` with lengths ``(B,)``."""
        cache, state = model.encode(src, src_lengths)
        batch = src.size(0)
        prev = src.new_full((batch,), bos_id)
        finished = torch.zeros(batch, dtype=torch.bool, device=src.device)
        lengths = torch.zeros(batch, dtype=torch.long, device=src.device)
        scores = torch.zeros(batch, device=src.device)
        tokens, weights = [], []
        for _ in range(self.length_cap(src_lengths)):
            log_probs, state, step_weights = model.decode_step(prev, state, cache)
            step_scores, prev = log_probs.max(dim=-1)
            prev = prev.masked_fill(finished, model.pad_id)  # finished rows only emit padding
            scores += step_scores.masked_fill(finished, 0.0)
            lengths += (~finished & prev.ne(eos_id)).long()
            tokens.append(prev)
            weights.append(step_weights)
            finished |= prev.eq(eos_id)
            if finished.all():
                break
        return Hypotheses(torch.stack(tokens, 1), lengths, scores, torch.stack(weights, 1))
