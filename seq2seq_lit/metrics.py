"""Corpus-level translation scores with sacreBLEU (Post 2018), overall and by source-length bucket."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

import sacrebleu

from .errors import ConfigError

# Upper edges of the source-length buckets in words (whitespace tokens of the raw source): 1-10, 11-20, ..., 51+,
# as Bahdanau et al. (2015, Fig. 2) and Luong et al. (2015, Fig. 6) plot BLEU against sentence length.
LENGTH_EDGES: tuple[int, ...] = (10, 20, 30, 40, 50)


def _bleu(**kwargs: Any) -> sacrebleu.BLEU:
    return sacrebleu.BLEU(tokenize="13a", **kwargs)


# name -> sacreBLEU metric of corpus_metrics
METRICS: dict[str, Callable[[], Any]] = {"bleu": _bleu, "chrf": sacrebleu.CHRF, "ter": sacrebleu.TER}


def corpus_metrics(
    hypotheses: Sequence[str], references: Sequence[str], names: Sequence[str] = ("bleu", "chrf", "ter")
) -> dict[str, dict[str, Any]]:
    """sacreBLEU's BLEU (13a tokenizer, cased), chrF (chrF2, character 6-grams) and TER (Snover et al. 2006; tercom
    tokenizer, case-insensitive) of detokenized hypotheses against raw references, each with its signature.

    BLEU and chrF are 0-100, higher is better; TER is the number of edits per reference word in percent, lower is
    better (it can exceed 100).

    Args:
        names: which of :data:`METRICS` to compute (validation during training skips TER).

    Returns:
        ``{"bleu": {"score": ..., "signature": "nrefs:1|case:mixed|...", "details": "BLEU = ... (BP = ...)"},
        "chrf": {...}, "ter": {...}}``; ``details`` is sacreBLEU's one-line summary of the score.

    Raises:
        ValueError: if the two lists differ in length.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    result = {}
    for name in names:
        metric = METRICS[name]()
        score = metric.corpus_score(hypotheses, [references])
        result[name] = {"score": score.score, "signature": str(metric.get_signature()), "details": str(score)}
    return result


def length_buckets(edges: Sequence[int] = LENGTH_EDGES) -> list[tuple[str, int, int]]:
    """``(label, shortest, longest)`` source-length buckets in words from increasing upper edges: ``(10, 20)`` gives
    ``1-10``, ``11-20`` and ``21+``.

    Raises:
        ConfigError: an edge is not a positive integer, or the edges do not increase.
    """
    edges = list(edges)
    if not all(isinstance(e, int) and not isinstance(e, bool) and e >= 1 for e in edges) or any(
        a >= b for a, b in zip(edges, edges[1:])
    ):
        raise ConfigError(f"length_buckets={edges!r}; fix: give increasing positive word counts, e.g. [10, 20, 30, 40, 50]")
    lows = [1, *(e + 1 for e in edges)]
    buckets = [(f"{low}-{high}", low, high) for low, high in zip(lows, edges)]
    return [*buckets, (f"{lows[-1]}+", lows[-1], 10**9)]


def bleu_signature() -> str:
    """The sacreBLEU signature of :func:`corpus_metrics`' BLEU against one reference per sentence (what training
    and ``s2s-eval`` score), e.g. ``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0``."""
    return str(_bleu(references=[["."]]).get_signature())


def bleu_by_source_length(
    sources: Sequence[str], hypotheses: Sequence[str], references: Sequence[str], edges: Sequence[int] = LENGTH_EDGES
) -> dict[str, dict[str, float]]:
    """Corpus BLEU of each source-length bucket (see :func:`length_buckets`), e.g. to see whether attention's advantage
    grows with sentence length (Bahdanau et al. 2015, Fig. 2; Luong et al. 2015, Fig. 6).

    Returns:
        ``{label: {"bleu": ..., "sentences": n, "length_ratio": r}}`` for the non-empty buckets, shortest first;
        ``length_ratio`` is the hypotheses' length over the references' in BLEU's tokens (below 1 the brevity penalty
        applies: translations that end early show here).

    Raises:
        ConfigError: bad ``edges`` (see :func:`length_buckets`).
    """
    lengths = [len(source.split()) for source in sources]
    result = {}
    for label, shortest, longest in length_buckets(edges):
        chosen = [i for i, n in enumerate(lengths) if shortest <= n <= longest]
        if chosen:
            bleu = _bleu().corpus_score([hypotheses[i] for i in chosen], [[references[i] for i in chosen]])
            ratio = bleu.sys_len / bleu.ref_len if bleu.ref_len else 0.0
            result[label] = {"bleu": bleu.score, "sentences": len(chosen), "length_ratio": round(ratio, 4)}
    return result
