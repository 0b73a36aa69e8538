"""Scoring word alignments against gold alignments, and symmetrizing the alignments of the two directions.

A link ``(i, j)`` joins source word i and target word j (0-based). Gold alignments have sure links S and possible links
P, with S contained in P (Och & Ney 2003, Sec. 5.1): an automatic alignment A scores

    precision = |A ∩ P| / |A|,   recall = |A ∩ S| / |S|,   AER = 1 - (|A ∩ S| + |A ∩ P|) / (|A| + |S|),

summed over the corpus before dividing (Och & Ney 2003, Eq. 36-38). Symmetrization follows Koehn et al. (2003) and
Moses' ``grow-diag-final``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

Link = tuple[int, int]
SYMMETRIZATIONS = ("intersection", "union", "grow-diag-final")
_NEIGHBOURS = ((-1, 0), (0, -1), (1, 0), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))


class GoldAlignment(NamedTuple):
    """The gold links of one sentence pair: ``sure`` (S) and ``possible`` (P, which includes S)."""

    sure: frozenset[Link]
    possible: frozenset[Link]


class AlignmentScores(NamedTuple):
    """Corpus-level precision, recall and AER (fractions in [0, 1]), and the link counts they come from."""

    precision: float
    recall: float
    aer: float
    predicted: int
    sure: int

    def as_dict(self) -> dict[str, float]:
        return self._asdict()


def score_alignments(predicted: Sequence[Iterable[Link]], gold: Sequence[GoldAlignment]) -> AlignmentScores:
    """Precision, recall and AER of ``predicted`` links against ``gold``, one entry per sentence pair.

    Raises:
        ValueError: the two lists differ in length, or neither has any link (the scores would be 0 / 0).
    """
    if len(predicted) != len(gold):
        raise ValueError(f"{len(predicted)} predicted alignments for {len(gold)} gold alignments")
    a_total = s_total = a_and_s = a_and_p = 0
    for links, g in zip(predicted, gold):
        links = set(links)
        a_total += len(links)
        s_total += len(g.sure)
        a_and_s += len(links & g.sure)
        a_and_p += len(links & g.possible)
    if a_total + s_total == 0:
        raise ValueError("no predicted and no sure gold link: precision, recall and AER are undefined")
    return AlignmentScores(
        precision=a_and_p / a_total if a_total else 0.0,
        recall=a_and_s / s_total if s_total else 0.0,
        aer=1.0 - (a_and_s + a_and_p) / (a_total + s_total),
        predicted=a_total,
        sure=s_total,
    )


def symmetrize(forward: Iterable[Link], backward: Iterable[Link], method: str = "grow-diag-final") -> list[Link]:
    """Combine the links of a source→target and a target→source model, both given as ``(source, target)`` pairs.

    ``intersection`` keeps the links both directions agree on (high precision), ``union`` all of them (high recall),
    ``grow-diag-final`` starts from the intersection, adds union links next to (also diagonally) an existing link that
    align a so far unaligned word, then, in a final pass over each direction, union links of words still unaligned
    (Koehn et al. 2003; Moses' ``grow-diag-final``).

    Raises:
        ValueError: an unknown method.
    """
    if method not in SYMMETRIZATIONS:
        raise ValueError(f"symmetrization {method!r}: choose one of {', '.join(SYMMETRIZATIONS)}")
    forward, backward = set(forward), set(backward)
    if method == "intersection":
        return sorted(forward & backward)
    union = forward | backward
    if method == "union":
        return sorted(union)
    links = forward & backward
    src_aligned = {i for i, _ in links}
    tgt_aligned = {j for _, j in links}

    def add(link: Link) -> None:
        links.add(link)
        src_aligned.add(link[0])
        tgt_aligned.add(link[1])

    grown = True
    while grown:  # grow-diag
        grown = False
        for i, j in sorted(links):
            for di, dj in _NEIGHBOURS:
                candidate = (i + di, j + dj)
                if candidate in union and candidate not in links and (
                    candidate[0] not in src_aligned or candidate[1] not in tgt_aligned
                ):
                    add(candidate)
                    grown = True
    for direction in (forward, backward):  # final
        for i, j in sorted(direction):
            if (i not in src_aligned or j not in tgt_aligned) and (i, j) not in links:
                add((i, j))
    return sorted(links)
