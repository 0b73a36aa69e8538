"""Hard alignments from attention weights, in the Pharaoh ``i-j`` format (Koehn et al. 2003; fast_align, Moses).

Shapes: T emitted target pieces (EOS included), S source pieces (EOS included).

Each target piece is aligned to the source piece with the largest attention weight (as OpenNMT-py's ``-report_align``
does with the attention of its decoder). At ``word`` level, pieces map to the whitespace-separated words they belong
to (a sentencepiece piece that starts with U+2581 "▁" opens a new word), so ``i`` indexes the words of the raw source
line and ``j`` the words of the detokenized translation; the EOS pieces are left out.
"""

from __future__ import annotations

from collections.abc import Sequence

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
