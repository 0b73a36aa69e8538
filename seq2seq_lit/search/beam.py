"""Beam search, batched over sentences and beams, with GNMT length and coverage penalties.

Shapes: B batch (sentences), n sentences still being decoded, K beam size, N n-best, S source length, T' decoded
steps, V target vocabulary.

Each step expands the K alive hypotheses of every unfinished sentence by every token, keeps the 2K best expansions
by summed log-probability, finishes those among the first K that end with EOS, and continues with the K best that do
not (as fairseq does, so that K hypotheses stay alive). A sentence is done when it has N finished hypotheses and its
best alive hypothesis, were it to end at the next step, would not beat the N-th of them (see :meth:`BeamSearch._undone`),
or at the length cap, where its K best are finished as they are; done sentences leave the batch, so the step cost
shrinks as the batch finishes. Finished hypotheses are ranked by the GNMT score (Wu et al. 2016, Eq. 14):

    s(Y, X) = log P(Y | X) / lp(Y) + cp(X; Y)
    lp(Y)   = ((5 + |Y|) / 6) ** alpha                                      length penalty, |Y| counts EOS
    cp(X;Y) = beta * sum_i log(min(sum_j p_ij, 1))                          coverage penalty over source tokens i

With ``beam_size=1``, ``alpha=0`` and ``beta=0`` the output is exactly greedy search's.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Hypotheses, Search


def length_penalty(lengths: Tensor, alpha: float) -> Tensor:
    """GNMT length penalty ``((5 + |Y|) / 6) ** alpha`` of hypothesis lengths ``(...)`` (EOS counted)."""
    return ((5.0 + lengths.float()) / 6.0) ** alpha


def coverage_penalty(attention: Tensor, src_pad_mask: Tensor, beta: float) -> Tensor:
    """GNMT coverage penalty ``beta * sum_i log(min(sum_j p_ij, 1))``.

    Args:
        attention: ``(..., T', S)`` weights of each emitted token over the source.
        src_pad_mask: ``(..., S)``, True on padding (left out of the sum).
        beta: weight (0 disables the penalty).

    Returns:
        ``(...)``, at most 0; a source token that received no attention at all counts as coverage 1e-6 (the log
        would be -inf, e.g. outside a local-attention window).
    """
    if beta == 0.0:
        return attention.new_zeros(attention.shape[:-2])
    coverage = attention.float().sum(-2).clamp(min=1e-6, max=1.0)
    return beta * coverage.log().masked_fill(src_pad_mask, 0.0).sum(-1)


class BeamSearch(Search):
    """Beam search with n-best output.

    Args:
        beam_size: K, hypotheses kept alive per sentence.
        n_best: N <= K, hypotheses returned per sentence, best first.
        alpha: length penalty exponent (0: none; GNMT uses 0.6-0.7).
        beta: coverage penalty weight (0: none; GNMT uses 0.2).
        min_length, max_length, max_length_ratio, max_length_offset: see :class:`~seq2seq_lit.search.base.Search`.

    Raises:
        ConfigError: for ``beam_size < 1``, ``n_best`` outside ``[1, beam_size]``, or negative ``alpha``/``beta``.
    """

    def __init__(self, beam_size: int = 5, n_best: int = 1, alpha: float = 0.0, beta: float = 0.0, **lengths) -> None:
        from ..errors import ConfigError

        super().__init__(**lengths)
        if beam_size < 1 or not 1 <= n_best <= beam_size:
            raise ConfigError(
                f"model.search.beam_size={beam_size}, n_best={n_best}: need beam_size >= 1 and 1 <= n_best <= beam_size"
            )
        if alpha < 0 or beta < 0:
            raise ConfigError(f"model.search.alpha={alpha}, beta={beta}: the penalties' weights must be >= 0")
        self.beam_size = beam_size
        self.n_best = n_best
        self.alpha = alpha
        self.beta = beta

    def final_scores(self, log_probs: Tensor, lengths: Tensor, attention: Tensor, src_pad_mask: Tensor) -> Tensor:
        """GNMT scores ``(...)`` of finished hypotheses from their summed log-probabilities, lengths (EOS counted),
        attention ``(..., T', S)`` and source padding mask ``(..., S)``."""
        return log_probs / length_penalty(lengths, self.alpha) + coverage_penalty(attention, src_pad_mask, self.beta)

    def _undone(self, finished: list[list[tuple]], sentences: list[int], best_alive: Tensor, step: int) -> Tensor:
        """Which sentences ``(n,)`` go on: those with fewer than ``n_best`` finished hypotheses, or whose best alive
        hypothesis (summed log-probability ``best_alive`` ``(n,)``) could still beat the ``n_best``-th finished one if
        it ended at the next step. Log-probabilities only fall as a hypothesis grows, so without length penalty no
        better hypothesis is missed; with it this is the usual heuristic (as in Hugging Face's beam search)."""
        bounds = (best_alive / length_penalty(best_alive.new_full((), step + 2), self.alpha)).tolist()
        undone = []
        for b, bound in zip(sentences, bounds):
            scores = sorted((h[0] for h in finished[b]), reverse=True)
            undone.append(len(scores) < self.n_best or scores[self.n_best - 1] < bound)
        return torch.tensor(undone, device=best_alive.device)

    @torch.no_grad()
    def __call__(self, model, src: Tensor, src_lengths: Tensor, bos_id: int, eos_id: int) -> Hypotheses:
        """Decode ``src`` ``(B, S)`` with lengths ``(B,)``; returns ``n_best`` hypotheses per sentence."""
        K, device = self.beam_size, src.device
        batch, src_len = src.shape
        cache, state = model.encode(src, src_lengths)
        beams = torch.arange(batch, device=device).repeat_interleave(K)  # (B K,): sentence of each beam row
        cache, state = cache.repeat_interleave(K), state.index_select(beams)
        src_pad_mask = src.eq(model.pad_id)  # (B, S)
        sentence = torch.arange(batch, device=device)  # (n,): original index of each sentence still decoded
        alive_scores = torch.full((batch, K), float("-inf"), device=device)
        alive_scores[:, 0] = 0.0  # one hypothesis (BOS) per sentence at the start
        alive_tokens = src.new_empty((batch * K, 0))  # (n K, t)
        alive_attention = torch.zeros(batch * K, 0, src_len, device=device)  # (n K, t, S)
        prev = src.new_full((batch * K,), bos_id)
        finished: list[list[tuple[float, Tensor, Tensor]]] = [[] for _ in range(batch)]  # (score, tokens, attention)
        cap = self.length_cap(src_lengths)
        for step in range(cap):
            log_probs, state, weights = model.decode_step(prev, state, cache)  # (n K, V), (n K, S)
            log_probs = self.block_early_eos(log_probs.float(), step, eos_id)
            n, vocab = alive_scores.size(0), log_probs.size(-1)
            expanded = (alive_scores.view(-1, 1) + log_probs).view(n, K * vocab)
            top_scores, top_ids = expanded.topk(min(2 * K, K * vocab), dim=1)  # (n, 2K), best first
            rows = torch.arange(n, device=device).unsqueeze(1) * K + top_ids // vocab  # (n, 2K): parent beam row
            tokens = top_ids % vocab
            ends = tokens.eq(eos_id) & top_scores.gt(float("-inf"))
            ends[:, K:] = False  # only EOS among the K best finishes a hypothesis
            if step == cap - 1:  # the length cap finishes the K best as they are
                ends[:, :K] = top_scores[:, :K].gt(float("-inf"))
            if ends.any():  # score every hypothesis that ends here at once
                ended_sentence, ended_rows = sentence.unsqueeze(1).expand_as(rows)[ends], rows[ends]  # (m,)
                ended_tokens = torch.cat([alive_tokens[ended_rows], tokens[ends].unsqueeze(1)], dim=1)
                ended_attention = torch.cat([alive_attention[ended_rows], weights[ended_rows].float().unsqueeze(1)], dim=1)
                lengths = torch.full_like(ended_rows, step + 1)
                scores = self.final_scores(top_scores[ends], lengths, ended_attention, src_pad_mask[ended_sentence])
                for k, (b, score) in enumerate(zip(ended_sentence.tolist(), scores.tolist())):
                    finished[b].append((score, ended_tokens[k], ended_attention[k]))
            if step == cap - 1:
                break
            # the K best expansions that did not end continue (at most K of the 2K end, so K remain)
            keep = ~tokens.eq(eos_id)
            keep &= keep.cumsum(1) <= K
            kept_scores = top_scores[keep].view(n, K)
            undone = self._undone(finished, sentence.tolist(), kept_scores[:, 0], step)
            if not undone.any():
                break
            next_rows = rows[keep].view(n, K)[undone].flatten()  # (n' K,)
            next_tokens = tokens[keep].view(n, K)[undone]
            alive_scores = kept_scores[undone]
            alive_tokens = torch.cat([alive_tokens[next_rows], next_tokens.view(-1, 1)], dim=1)
            alive_attention = torch.cat([alive_attention[next_rows], weights[next_rows].float().unsqueeze(1)], dim=1)
            state = state.index_select(next_rows)
            if not undone.all():  # sentences that are done leave the batch
                sentence = sentence[undone]
                cache = cache.index_select(next_rows)
            prev = next_tokens.flatten()
        return self._n_best(finished, src_pad_mask, eos_id, model.pad_id)

    def _n_best(
        self, finished: list[list[tuple[float, Tensor, Tensor]]], src_pad_mask: Tensor, eos_id: int, pad_id: int
    ) -> Hypotheses:
        """Pack the ``n_best`` highest-scoring finished hypotheses of each sentence, best first (ties: first found)."""
        chosen = [hyp for hyps in finished for hyp in sorted(hyps, key=lambda h: -h[0])[: self.n_best]]
        device = src_pad_mask.device
        longest = max(len(tokens) for _, tokens, _ in chosen)
        tokens = torch.full((len(chosen), longest), pad_id, dtype=torch.long, device=device)
        attention = torch.zeros(len(chosen), longest, src_pad_mask.size(1), device=device)
        lengths = torch.zeros(len(chosen), dtype=torch.long, device=device)
        for r, (_, hyp_tokens, hyp_attention) in enumerate(chosen):
            tokens[r, : len(hyp_tokens)] = hyp_tokens
            attention[r, : len(hyp_tokens)] = hyp_attention
            lengths[r] = len(hyp_tokens) - int(hyp_tokens[-1] == eos_id)
        scores = torch.tensor([score for score, _, _ in chosen], device=device)
        return Hypotheses(tokens, lengths, scores, attention, n_best=self.n_best)
