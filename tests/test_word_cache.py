"""The word cache gives sentencepiece's ids exactly: on every code point beside spaces, on random text of tricky
characters, on the real corpora; it falls back where a model does not split at spaces, and its guard notices a
difference."""

from __future__ import annotations

import logging
import os
import random
import sys
from pathlib import Path

import numpy as np
import pytest

from seq2seq_lit.data.corpus import read_parallel
from seq2seq_lit.data.tokenizer import SentencePieceTokenizer, train_sentencepiece
from seq2seq_lit.data.word_cache import WordCache, caches_exactly

# Spaces sentencepiece normalizes (or not), combining marks, NFKC compatibility characters (some of which normalize
# to text with a space, e.g. U+00A8 to " \u0308"), controls, joiners, emoji, wide and right-to-left letters.
TRICKY = (
    " \t\u00a0\u1680\u2000\u2003\u200a\u202f\u205f\u3000\u0085\u2028\u2029\x0b\x0c\x1c\x1f"
    "\u0301\u0308\u0327\u20dd\u00a8\u00b4\u02dc\ufb01\u2460\u00bd\uff21\uff41\u2126\u212b\u1e9b\u0344"
    "\u200b\u200c\u200d\ufeff\x00\x7f\u00ad\U0001f600\U0001f469\u200d\U0001f4bb\u4e2d\u6587\u05d0\u0627\u0e01"
    "aeiouAEIOU\u00e4\u00f6\u00fc\u00df\u00e9.,;-'\"0123456789"
)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> SentencePieceTokenizer:
    """A BPE model trained on words of Latin, German, Cyrillic and Greek letters, digits and punctuation: the other
    characters of the tests are unknown to it, as a corpus' rare characters are."""
    rng = random.Random(0)
    alphabet = "abcdefghijklmnopqrstuvwxyzäöüßéABCDEFGHIJKLMNOPQRSTUVWXYZабвгдежзикαβγδ0123456789.,;-'"
    words = ["".join(rng.choices(alphabet[: rng.randint(5, len(alphabet))], k=rng.randint(1, 9))) for _ in range(3000)]
    lines = [" ".join(rng.choices(words, k=rng.randint(1, 12))) for _ in range(4000)]
    return train_sentencepiece(lines, vocab_size=600, cache_dir=tmp_path_factory.mktemp("spm"))


def assert_same_ids(tokenizer: SentencePieceTokenizer, lines: list[str], **cache_options: int) -> None:
    cache = WordCache(tokenizer, check_every=0, **cache_options)
    for start in range(0, len(lines), 5000):  # several calls: later ones read words cached by earlier ones
        chunk = lines[start : start + 5000]
        ids, lengths = cache.encode_flat(chunk)
        expected_ids, expected_lengths = tokenizer.encode_flat(chunk)
        if not (np.array_equal(lengths, expected_lengths) and np.array_equal(ids, expected_ids)):
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            expected_offsets = np.concatenate([[0], np.cumsum(expected_lengths)])
            bad = next(
                i for i in range(len(chunk))
                if list(ids[offsets[i] : offsets[i + 1]]) != list(expected_ids[expected_offsets[i] : expected_offsets[i + 1]])
            )
            pytest.fail(f"line {chunk[bad]!r}: cache {ids[offsets[bad]:offsets[bad + 1]]}, sentencepiece "
                        f"{expected_ids[expected_offsets[bad]:expected_offsets[bad + 1]]}")
        assert ids.dtype == expected_ids.dtype and lengths.dtype == expected_lengths.dtype


def test_every_code_point_beside_spaces(tokenizer: SentencePieceTokenizer) -> None:
    # The Basic Multilingual Plane whole, and every 64th code point above it (the test's time).
    code_points = [chr(c) for c in [*range(0x10000), *range(0x10000, sys.maxunicode + 1, 64)] if not 0xD800 <= c <= 0xDFFF]
    lines = [f"ab{c} {c}cd{c}  {c}\t{c} \u0301{c}{c} " for c in code_points if c != "\n"]
    assert_same_ids(tokenizer, lines)


def test_random_lines_of_tricky_characters(tokenizer: SentencePieceTokenizer) -> None:
    rng = random.Random(1)
    lines = ["".join(rng.choices(TRICKY, k=rng.randint(0, 40))) for _ in range(20_000)]
    lines += ["", " ", "   ", " a ", "a  b", "\u3000", "\u00a8", "a \u00a8b", "x\u00a0 y"]
    assert_same_ids(tokenizer, lines)


def test_a_full_cache_starts_afresh_with_the_same_ids(tokenizer: SentencePieceTokenizer) -> None:
    rng = random.Random(2)
    lines = [" ".join(rng.choice(["ab", "cd", "abc", "d", f"x{i}"]) for _ in range(6)) for i in range(12_000)]
    assert_same_ids(tokenizer, lines, max_words=50)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("SEQ2SEQ_DATA_DIR"), reason="SEQ2SEQ_DATA_DIR (the shared corpora) not set")
@pytest.mark.parametrize("corpus", ["multi30k", "wmt_news_deen"])
def test_real_corpora(corpus: str, tmp_path: Path) -> None:
    folder = Path(os.environ["SEQ2SEQ_DATA_DIR"]) / corpus
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    src, tgt = read_parallel(folder / "train.de", folder / "train.en")
    joint = train_sentencepiece(src + tgt, vocab_size=8000, cache_dir=tmp_path)
    for tokenizer, lines in ((joint.restricted_to(src), src), (joint, tgt)):
        assert_same_ids(tokenizer, lines)


def test_models_that_do_not_split_at_spaces_encode_whole_lines(tmp_path: Path) -> None:
    lines = ["a small text", "with a few words", "and a few more words in it"] * 30
    unigram = train_sentencepiece(lines, vocab_size=20, model_type="unigram", cache_dir=None)
    assert "not BPE" in caches_exactly(unigram.model_bytes)
    assert WordCache.for_tokenizer(unigram) is unigram
    bpe = train_sentencepiece(lines, vocab_size=20, cache_dir=None)
    assert caches_exactly(bpe.model_bytes) is None
    assert isinstance(WordCache.for_tokenizer(bpe), WordCache)


def test_the_guard_turns_a_wrong_cache_off(tokenizer: SentencePieceTokenizer, caplog) -> None:
    cache = WordCache(tokenizer, check_every=1)
    lines = ["abc de", "de f", "abc"]
    cache.encode_flat(lines)
    cache._ids[:] = 5  # a wrong entry for every cached word
    with caplog.at_level(logging.WARNING):
        ids, lengths = cache.encode_flat(lines)
    expected_ids, expected_lengths = tokenizer.encode_flat(lines)
    assert np.array_equal(ids, expected_ids) and np.array_equal(lengths, expected_lengths)
    assert not cache.enabled
    assert "encodes the line 'abc de' differently from sentencepiece" in caplog.text
