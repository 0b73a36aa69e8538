"""Encoding a corpus word by word with a cache: the same ids as sentencepiece, at a fraction of its cost.

A corpus of millions of lines repeats a much smaller set of words, and for the models this project trains a line's
piece ids are the ids of its space-separated words one after the other. :class:`WordCache` encodes each distinct word
once with sentencepiece and builds every line from the cached ids with array operations (the word cache of
subword-nmt, fastBPE and Hugging Face ``tokenizers``; Sennrich et al. 2016, "Neural Machine Translation of Rare Words
with Subword Units", section 3.2, apply BPE within words).

Why the ids are the same. Sentencepiece (Kudo and Richardson 2018) normalizes a line (``remove_extra_whitespaces``:
leading, trailing and repeated spaces removed; ``add_dummy_prefix``: one "▁" put before the first word), turns each
space into "▁", and merges characters into pieces. With ``split_by_whitespace`` (the default) no piece holds a "▁"
past its first character, so no piece spans two words, and BPE's merges inside one word (highest score first, ties
to the leftmost pair) do not depend on the other words. Each word, encoded alone, gets the same "▁" before it and the
same merges, so the concatenation of the words' ids is the line's ids. :meth:`WordCache.for_tokenizer` checks these
properties in the model itself and falls back to encoding whole lines where one does not hold (another model type, a
piece with an inner "▁", a normalizer that keeps extra spaces). As a guard, every call also encodes a sample of its
lines whole and compares; a difference turns the cache off with a warning.

N is the number of lines of a call, W the number of their words, P the number of their pieces.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from itertools import repeat

import numpy as np
from sentencepiece import sentencepiece_model_pb2

from seq2seq_lit.data.tokenizer import SentencePieceTokenizer

log = logging.getLogger(__name__)

WORD_BOUNDARY = "\u2581"
"""Sentencepiece's meta symbol for a space ("▁")."""
MAX_WORDS = 1 << 19
"""Distinct words a cache holds before it starts afresh: about 100 MB of strings, dict and ids per cache (200 MB
measured for 994,141 words of 4-14 letters)."""
CHECK_EVERY = 64
"""One line in this many is also encoded whole and compared (about 1.5% of sentencepiece's cost)."""


def caches_exactly(model_bytes: bytes) -> str | None:
    """None if encoding word by word gives the same ids as encoding whole lines with the sentencepiece model
    ``model_bytes`` (see the module docstring), else why not."""
    model = sentencepiece_model_pb2.ModelProto()
    model.ParseFromString(model_bytes)
    trainer, normalizer = model.trainer_spec, model.normalizer_spec
    if trainer.model_type != sentencepiece_model_pb2.TrainerSpec.BPE:
        # Unigram's Viterbi search compares sums of scores, whose rounding depends on where the sum starts.
        return f"model type {sentencepiece_model_pb2.TrainerSpec.ModelType.Name(trainer.model_type)}, not BPE"
    if trainer.treat_whitespace_as_suffix or not normalizer.add_dummy_prefix or not normalizer.remove_extra_whitespaces:
        return "the normalizer keeps extra spaces, adds no dummy prefix or puts '▁' after words"
    for piece in model.pieces:
        if WORD_BOUNDARY in piece.piece[1:]:
            return f"the piece {piece.piece!r} spans a word boundary"
        if piece.type == sentencepiece_model_pb2.ModelProto.SentencePiece.USER_DEFINED:
            return f"the user-defined piece {piece.piece!r} is matched before the text is split into words"
    return None


class WordCache:
    """Encodes lines as ``tokenizer.encode_flat`` does, sentencepiece encoding each distinct word only once.

    Use :meth:`for_tokenizer`, which returns the tokenizer itself where the cache would not give the same ids.

    Args:
        tokenizer: the tokenizer whose ids to reproduce.
        max_words: distinct words kept before the cache starts afresh (bounds its memory).
        check_every: one line in this many is also encoded whole and compared (0: none).
    """

    def __init__(self, tokenizer: SentencePieceTokenizer, max_words: int = MAX_WORDS, check_every: int = CHECK_EVERY):
        self.tokenizer = tokenizer
        self.max_words = max_words
        self.check_every = check_every
        self.enabled = True
        self._clear()

    @classmethod
    def for_tokenizer(cls, tokenizer: SentencePieceTokenizer, **kwargs: int) -> WordCache | SentencePieceTokenizer:
        """A cache for ``tokenizer``, or ``tokenizer`` itself if its model does not encode word by word exactly."""
        reason = caches_exactly(tokenizer.model_bytes)
        if reason is not None:
            log.info("encoding whole lines, without a word cache: %s", reason)
            return tokenizer
        return cls(tokenizer, **kwargs)

    @property
    def vocab_size(self) -> int:
        """The tokenizer's number of ids."""
        return self.tokenizer.vocab_size

    def _clear(self) -> None:
        self._index: dict[str, int] = {}  # word -> its row in the tables below
        self._ids = np.zeros(0, dtype=np.int32)  # the ids of every cached word, one word after the other
        self._starts = np.zeros(1, dtype=np.int64)  # word k's ids are _ids[_starts[k]:_starts[k + 1]]

    def encode_flat(self, texts: Sequence[str], num_threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, lengths): the (P,) int32 ids of all ``texts`` one after the other and the (N,) int64 number of ids of
        each, equal to ``tokenizer.encode_flat(texts)``.

        ``num_threads``: sentencepiece's threads for the words not cached yet (None: one per CPU core).
        """
        if not self.enabled or not texts:
            return self.tokenizer.encode_flat(texts, num_threads)
        words = " ".join(texts).split(" ")  # one space between lines, so line i holds texts[i].count(" ") + 1 words
        words_per_line = np.fromiter(map(str.count, texts, repeat(" ")), dtype=np.int64, count=len(texts)) + 1
        rows = self._rows(words, num_threads)
        word_lengths = self._starts[rows + 1] - self._starts[rows]
        ids = _gather(self._ids, self._starts[rows], word_lengths)
        line_ends = np.cumsum(word_lengths)[np.cumsum(words_per_line) - 1]
        lengths = np.diff(line_ends, prepend=0)
        if self.check_every and not self._same_as_whole_lines(texts, ids, line_ends - lengths, lengths):
            return self.tokenizer.encode_flat(texts, num_threads)
        return ids, lengths

    def _rows(self, words: list[str], num_threads: int | None) -> np.ndarray:
        """(W,) the cache rows of ``words``, encoding the ones not cached yet."""
        rows = np.fromiter(map(self._index.get, words, repeat(-1)), dtype=np.int64, count=len(words))
        if rows.min() >= 0:
            return rows
        new = list(dict.fromkeys(words[i] for i in np.flatnonzero(rows < 0).tolist()))  # the misses only
        if len(self._index) + len(new) > self.max_words:
            self._clear()
            new = list(dict.fromkeys(words))
        ids, lengths = self.tokenizer.encode_flat(new, num_threads)
        first = len(self._index)
        self._index.update(zip(new, range(first, first + len(new))))
        self._ids = np.concatenate([self._ids, ids.astype(np.int32, copy=False)])
        self._starts = np.concatenate([self._starts, self._starts[-1] + np.cumsum(lengths)])
        return np.fromiter(map(self._index.__getitem__, words), dtype=np.int64, count=len(words))

    def _same_as_whole_lines(
        self, texts: Sequence[str], ids: np.ndarray, line_starts: np.ndarray, lengths: np.ndarray
    ) -> bool:
        """Whether every ``check_every``-th line of ``texts``, encoded whole, has the cache's ids; a difference turns
        the cache off with a warning."""
        sample = np.arange(0, len(texts), self.check_every)
        expected_ids, expected_lengths = self.tokenizer.encode_flat([texts[i] for i in sample.tolist()], 1)
        got = _gather(ids, line_starts[sample], lengths[sample])
        if np.array_equal(lengths[sample], expected_lengths) and np.array_equal(got, expected_ids):
            return True
        per_line = zip(
            np.split(got, np.cumsum(lengths[sample])[:-1]),
            np.split(expected_ids, np.cumsum(expected_lengths)[:-1]),
        )
        first = next(i for i, (a, b) in zip(sample.tolist(), per_line) if not np.array_equal(a, b))
        log.warning(
            "the word cache encodes the line %r differently from sentencepiece; encoding whole lines from here on "
            "(slower)", texts[first],
        )
        self.enabled = False
        self._clear()
        return False


def _gather(table: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``table[starts[k] : starts[k] + lengths[k]]`` for every k, one after the other, without a Python loop."""
    ends = np.cumsum(lengths)
    return table[np.arange(int(ends[-1]) if len(ends) else 0) + np.repeat(starts - (ends - lengths), lengths)]

