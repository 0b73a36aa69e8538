"""Sampling search: each token drawn from the model's distribution, reshaped by temperature, top-k and top-p.

Shapes: B batch (sentences), N samples per sentence, V target vocabulary.

The distribution of step ``t`` is ``softmax(log p(y_t | y_<t, x) / temperature)``, restricted to the ``top_k`` most
probable tokens (Fan et al. 2018) and to the smallest set whose probability reaches ``top_p`` (nucleus sampling,
Holtzman et al. 2020), then renormalized, as fairseq's ``--sampling`` and OpenNMT-py's ``random_sampling_topk`` do.
Back-translation with sampling (Edunov et al. 2018) draws one sample per sentence at temperature 1.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ConfigError
from .base import Hypotheses
from .greedy import GreedySearch


def restrict(log_probs: Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """The sampling distribution's log-probabilities ``(B, V)`` (``-inf`` outside the kept tokens), unnormalized.

    Args:
        log_probs: ``(B, V)`` the model's log-probabilities.
        temperature: divides the log-probabilities (< 1 sharpens, > 1 flattens).
        top_k: keep the ``top_k`` most probable tokens; 0 keeps all.
        top_p: keep the most probable tokens until their probability reaches ``top_p`` (the token that crosses it
            included, so at least one token stays); 1 keeps all.
    """
    scores = log_probs.float() / temperature
    if 0 < top_k < scores.size(-1):
        kth = scores.topk(top_k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        sorted_scores, order = scores.sort(dim=-1, descending=True)
        probs = sorted_scores.softmax(-1)
        before = probs.cumsum(-1) - probs  # the probability of the tokens ranked above each one
        drop = before >= top_p
        scores = scores.scatter(-1, order, sorted_scores.masked_fill(drop, float("-inf")))
    return scores


class SampleSearch(GreedySearch):
    """Draw ``n_samples`` translations per sentence, batched like greedy search (a sample leaves the batch at EOS).

    ``scores`` are the model's summed log-probabilities of the drawn tokens (EOS included), before temperature and
    truncation; a sentence's samples are returned best score first.

    Args:
        temperature: > 0; see :func:`restrict`.
        top_k: >= 0 (0: no top-k restriction).
        top_p: in (0, 1] (1: no nucleus restriction).
        n_samples: N >= 1 samples per sentence.
        seed: seed of the search's own random generator (None: drawn from torch's global generator); with a seed, the
            same batches give the same samples.
        min_length, max_length, max_length_ratio, max_length_offset: see :class:`~seq2seq_lit.search.base.Search`.

    Raises:
        ConfigError: a setting outside its range, naming the key.
    """

    def __init__(
        self,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        n_samples: int = 1,
        seed: int | None = None,
        **lengths,
    ) -> None:
        super().__init__(**lengths)
        if not temperature > 0:
            raise ConfigError(f"model.search.temperature={temperature}: must be > 0 (1: the model's distribution)")
        if top_k < 0:
            raise ConfigError(f"model.search.top_k={top_k}: must be >= 0 (0 keeps every token)")
        if not 0 < top_p <= 1:
            raise ConfigError(f"model.search.top_p={top_p}: must be in (0, 1] (1 keeps every token); fix: e.g. 0.9")
        if n_samples < 1:
            raise ConfigError(f"model.search.n_samples={n_samples}: must be >= 1")
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.n_best = n_samples
        self.seed = seed
        self._generator: torch.Generator | None = None

    def _random(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device).manual_seed(self.seed)
        return self._generator

    def pick(self, log_probs: Tensor) -> tuple[Tensor, Tensor]:
        probs = restrict(log_probs, self.temperature, self.top_k, self.top_p).softmax(-1)
        tokens = torch.multinomial(probs, 1, generator=self._random(log_probs.device)).squeeze(1)
        return log_probs.gather(1, tokens.unsqueeze(1)).squeeze(1), tokens

    def __call__(self, model, src: Tensor, src_lengths: Tensor, bos_id: int, eos_id: int) -> Hypotheses:
        """Decode ``src`` ``(B, S)`` with lengths ``(B,)``; ``n_samples`` hypotheses per sentence, best first."""
        hyps = super().__call__(model, src, src_lengths, bos_id, eos_id)
        if self.n_best == 1:
            return hyps
        n = self.n_best
        order = hyps.scores.view(-1, n).argsort(dim=1, descending=True, stable=True)
        rows = (order + torch.arange(0, order.numel(), n, device=order.device).unsqueeze(1)).flatten()
        return Hypotheses(hyps.tokens[rows], hyps.lengths[rows], hyps.scores[rows], hyps.attention[rows], n_best=n)

