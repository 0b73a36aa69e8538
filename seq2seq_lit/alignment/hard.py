"""Hard alignments from attention weights, in the Pharaoh ``i-j`` format (Koehn et al. 2003; fast_align, Moses).

Shapes: T emitted target pieces (EOS included), S source pieces (EOS included); Tw, Sw target and source words.

:func:`hard_alignment` serves translations (``s2s-translate alignment_output=``); :func:`encode_words`,
:func:`word_weights` and :func:`word_links` serve ``s2s-align``, which aligns given pre-tokenized words.

Each target piece is aligned to the source piece with the largest attention weight (as OpenNMT-py's ``-report_align``
does with the attention of its decoder). At ``word`` level, pieces map to the whitespace-separated words they belong
to (a sentencepiece piece that starts with U+2581 "▁" opens a new word), so ``i`` indexes the words of the raw source
line and ``j`` the words of the detokenized translation; the EOS pieces are left out.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

WORD_START = "\u2581"
LEVELS = ("word", "piece")
SPECIALS = ("</s>", "<s>", "<pad>")


def word_index(pieces: Sequence[str]) -> list[int]:
    """The 0-based word of each piece; a piece starting with "▁" (or the first piece) opens a word."""
    words, current = [], -1
    for piece in pieces:
        if current < 0 or piece.startswith(WORD_START):
            current += 1
        words.append(current)
    return words


def hard_alignment(weights: Tensor, src_pieces: Sequence[str], tgt_pieces: Sequence[str], level: str = "word") -> list[tuple[int, int]]:
    """Sorted ``(source index, target index)`` pairs, each target piece aligned to its most attended source piece.

    Args:
        weights: ``(T, S)`` attention weights of the emitted target pieces over the source pieces.
        src_pieces: S source piece strings; tgt_pieces: T target piece strings (special pieces are skipped).
        level: ``word`` (indices of whitespace words) or ``piece`` (indices of sentencepiece pieces).

    Raises:
        ValueError: for an unknown level or labels that do not match ``weights``.
    """
    if level not in LEVELS:
        raise ValueError(f"alignment level {level!r}: choose one of {', '.join(LEVELS)}")
    if weights.shape != (len(tgt_pieces), len(src_pieces)):
        raise ValueError(f"weights {tuple(weights.shape)} do not match {len(tgt_pieces)} target x {len(src_pieces)} source pieces")
    src_real = [i for i, p in enumerate(src_pieces) if p not in SPECIALS]
    tgt_real = [j for j, p in enumerate(tgt_pieces) if p not in SPECIALS]
    if not src_real or not tgt_real:
        return []
    best = weights[tgt_real][:, src_real].argmax(-1).tolist()
    pairs = [(src_real[b], j) for b, j in zip(best, tgt_real)]
    if level == "word":
        src_words = word_index([src_pieces[i] for i in src_real])
        tgt_words = word_index([tgt_pieces[j] for j in tgt_real])
        src_pos = {i: w for i, w in zip(src_real, src_words)}
        tgt_pos = {j: w for j, w in zip(tgt_real, tgt_words)}
        pairs = [(src_pos[i], tgt_pos[j]) for i, j in pairs]
    else:
        src_pos = {i: k for k, i in enumerate(src_real)}
        tgt_pos = {j: k for k, j in enumerate(tgt_real)}
        pairs = [(src_pos[i], tgt_pos[j]) for i, j in pairs]
    return sorted(set(pairs))


def pharaoh(pairs: Sequence[tuple[int, int]]) -> str:
    """``i-j`` pairs separated by spaces, e.g. ``"0-0 1-2 2-1"``."""
    return " ".join(f"{i}-{j}" for i, j in pairs)


def encode_words(tokenizer, words: Sequence[str]) -> tuple[list[int], list[int]]:
    """Piece ids of whitespace-separated ``words`` and the 0-based word of each piece.

    Each word is encoded on its own, so the map is exact: with sentencepiece's default whitespace splitting no piece
    crosses a word boundary, and the ids are those of encoding the joined line.
    """
    ids, owners = [], []
    for k, word in enumerate(words):
        pieces = tokenizer.encode(word)
        ids += pieces
        owners += [k] * len(pieces)
    return ids, owners


def word_weights(weights: Tensor, src_words: Sequence[int], tgt_words: Sequence[int]) -> Tensor:
    """Attention between words from attention between pieces.

    A target word's row is the mean of its pieces' rows (so it stays a distribution over source pieces); within it,
    the weights of a source word's pieces are summed.

    Args:
        weights: ``(T, S)`` weights of target pieces over source pieces, without the EOS row and column.
        src_words, tgt_words: the word of each of the S source and T target pieces (see :func:`encode_words`).

    Returns:
        ``(Tw, Sw)`` weights, Tw and Sw the number of target and source words.

    Raises:
        ValueError: ``weights`` does not match the two maps.
    """
    if weights.shape != (len(tgt_words), len(src_words)):
        raise ValueError(f"weights {tuple(weights.shape)} do not match {len(tgt_words)} target x {len(src_words)} source pieces")
    src_index = torch.tensor(src_words, dtype=torch.long)
    tgt_index = torch.tensor(tgt_words, dtype=torch.long)
    n_src, n_tgt = (max(words, default=-1) + 1 for words in (src_words, tgt_words))
    by_src = weights.float().new_zeros(len(tgt_words), n_src).index_add_(1, src_index, weights.float())
    summed = by_src.new_zeros(n_tgt, n_src).index_add_(0, tgt_index, by_src)
    return summed / torch.bincount(tgt_index, minlength=n_tgt).clamp(min=1).unsqueeze(1)


def word_links(weights: Tensor, threshold: float | None = None) -> list[tuple[int, int]]:
    """Sorted ``(source word, target word)`` links from ``(Tw, Sw)`` word attention: each target word to its most
    attended source word, and, with ``threshold``, also to every source word with at least that weight."""
    if weights.numel() == 0:
        return []
    links = {(int(i), j) for j, i in enumerate(weights.argmax(-1).tolist())}
    if threshold is not None:
        links |= {(int(i), int(j)) for j, i in (weights >= threshold).nonzero().tolist()}
    return sorted(links)
