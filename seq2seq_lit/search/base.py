"""The decoding interface: a search turns encoded sentences into :class:`Hypotheses` through the model's step API.

Shapes: B batch (sentences), N hypotheses kept per sentence (n-best), S source length, T' decoded steps,
V target vocabulary.

A search is called as ``search(model, src, src_lengths, bos_id, eos_id)``; ``model`` needs ``encode(src,
src_lengths) -> (cache, state)``, ``decode_step(prev_tokens, state, cache) -> (log_probs (B, V), state, weights (B,
S))`` and ``pad_id`` (as :class:`~seq2seq_lit.modules.Seq2Seq` has). Cache and state must support
``index_select(0-dim index)`` to repeat, reorder and drop sentences, and the cache ``repeat_interleave(K)`` to give
each sentence K beams (:class:`~seq2seq_lit.modules.AttentionCache` shares one row among them where it can).

Every tensor a search makes is created on the device of ``src``. Host syncs (reads of device values, each waiting for
the device to finish its queued work) that a search needs:

- the length cap, ``int(src_lengths.max())``: none when ``src_lengths`` is on the host, as
  :meth:`~seq2seq_lit.data.Batch.to` leaves it (else one per batch);
- greedy: one per decoder step, whether any sentence emitted EOS (``ended.any()``), to drop finished sentences and to
  stop, plus the rows kept (``nonzero``) at steps where some did;
- beam: per decoder step, whether any hypothesis ended (``ends.any()``) and, where some did, their sentences and
  scores (``tolist``: the finished hypotheses are kept on the host); the sentences still decoded and the
  early-stopping bounds (``tolist``), which sentences go on (``undone.any()`` / ``all()``), and the boolean-mask
  selections of rows (``[keep]``, ``[undone]``, each sized on the host);
- the result, once per batch: :meth:`Hypotheses.token_lists` reads the tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class Hypotheses:
    """Decoded sentences, ``n_best`` per source sentence, sentence-major (row ``b * n_best + k`` is the ``k``-th best
    hypothesis of sentence ``b``).

    Attributes:
        tokens: ``(B * N, T')`` token ids without BOS; a row ends with EOS (unless cut at the length cap), then padding.
        lengths: ``(B * N,)`` tokens before EOS.
        scores: ``(B * N,)`` the search's score of each hypothesis: the sum of the log-probabilities of its tokens,
            EOS included, divided by the length penalty and plus the coverage penalty where the search applies them.
        attention: ``(B * N, T', S)`` attention weights of each emitted token (zeros after the end).
        n_best: N.
    """

    tokens: Tensor
    lengths: Tensor
    scores: Tensor
    attention: Tensor
    n_best: int = 1

    def token_lists(self) -> list[list[int]]:
        """Each hypothesis as a list of ids, EOS and padding removed, in row order."""
        return [row[:n].tolist() for row, n in zip(self.tokens, self.lengths.tolist())]

    def best(self) -> "Hypotheses":
        """The first (best) hypothesis of each sentence: ``B`` rows."""
        if self.n_best == 1:
            return self
        rows = slice(None, None, self.n_best)
        return Hypotheses(self.tokens[rows], self.lengths[rows], self.scores[rows], self.attention[rows])


class Search:
    """Length limits shared by the searches.

    Args:
        min_length: EOS is not allowed before this many tokens have been emitted.
        max_length: absolute cap on emitted tokens.
        max_length_ratio, max_length_offset: per batch, at most ``ratio * longest source + offset`` tokens.

    Raises:
        ConfigError: for a negative ``min_length`` or a ``max_length`` below 1.
    """

    n_best = 1

    def __init__(
        self, min_length: int = 0, max_length: int = 200, max_length_ratio: float = 1.5, max_length_offset: int = 10
    ) -> None:
        from ..errors import ConfigError

        if min_length < 0 or max_length < 1:
            raise ConfigError(
                f"model.search.min_length={min_length}, max_length={max_length}: need min_length >= 0 and max_length >= 1"
            )
        self.min_length = min_length
        self.max_length = max_length
        self.max_length_ratio = max_length_ratio
        self.max_length_offset = max_length_offset

    def length_cap(self, src_lengths: Tensor) -> int:
        """The most tokens a hypothesis of this batch may have (EOS included)."""
        return min(self.max_length, int(self.max_length_ratio * int(src_lengths.max())) + self.max_length_offset)

    def block_early_eos(self, log_probs: Tensor, step: int, eos_id: int) -> Tensor:
        """Set the log-probability of EOS ``(B, V)`` to -inf in place while ``step < min_length``."""
        if step < self.min_length:
            log_probs[:, eos_id] = float("-inf")
        return log_probs

    def __call__(self, model, src: Tensor, src_lengths: Tensor, bos_id: int, eos_id: int) -> Hypotheses:
        """Decode ``src`` ``(B, S)`` with lengths ``(B,)``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        settings = {k: v for k, v in vars(self).items() if not k.startswith("_")}  # not internal state
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in settings.items())})"
