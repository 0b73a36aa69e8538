"""Translating lines with a loaded model: the n-best hypotheses of each line with their scores, pieces and attention
weights (:func:`translate_nbest`), or the best translation of each (:func:`translate_lines`). Used by
``s2s-translate``, ``s2s-eval`` and the benchmarks.

Shapes: S source pieces of a line (EOS included), T emitted target pieces (EOS included where emitted).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ..data import collate
from ..lit_module import Seq2SeqLitModule

log = logging.getLogger(__name__)


@dataclass
class Translation:
    """One hypothesis for one input line.

    Attributes:
        text: the detokenized translation.
        score: the search's score (summed log-probability in nats, after the beam's penalties, if any).
        src_ids: source piece ids, EOS included (S).
        tgt_ids: emitted target piece ids, EOS included where emitted (T).
        attention: ``(T, S)`` attention weights, on the CPU.
    """

    text: str
    score: float
    src_ids: list[int]
    tgt_ids: list[int]
    attention: torch.Tensor


def source_limit(module: Seq2SeqLitModule, max_src_length: int | None = None) -> int | None:
    """The most source pieces (EOS not counted) a line may keep: ``max_src_length``, and at most what the model can
    attend over (location attention has a fixed maximum); None for no limit."""
    limits = [m.max_source_length - 1 for m in module.modules() if isinstance(getattr(m, "max_source_length", None), int)]
    return min([*limits, max_src_length] if max_src_length is not None else limits, default=None)


@torch.no_grad()
def translate_nbest(
    module: Seq2SeqLitModule,
    lines: list[str],
    batch_size: int = 100,
    max_src_length: int | None = None,
    first_line: int = 1,
) -> list[list[Translation]]:
    """Translate ``lines`` with ``module.search``; returns per line its ``n_best`` hypotheses, best first ([] for a
    blank line). Lines are decoded in batches of similar length. A line of more than ``max_src_length`` pieces (or
    more than the model can attend over) is translated from its first pieces, with a warning naming the lines
    (numbered from ``first_line``)."""
    results: list[list[Translation]] = [[] for _ in lines]
    src_ids = module.tokenizers.src.encode_batch(lines)
    limit = source_limit(module, max_src_length)
    if limit is not None and (long := [i for i, ids in enumerate(src_ids) if len(ids) > limit]):
        numbers = ", ".join(str(i + first_line) for i in long[:20]) + (", ..." if len(long) > 20 else "")
        log.warning(
            "%d input line(s) longer than %d source pieces translated from their first %d pieces only: line(s) %s "
            "(1-based; raise max_src_length to keep more)", len(long), limit, limit, numbers,
        )
        for i in long:
            src_ids[i] = src_ids[i][:limit]
    todo = sorted((i for i, line in enumerate(lines) if line.strip()), key=lambda i: len(src_ids[i]))
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        batch = collate([(i, src_ids[i], None) for i in chunk]).to(module.device)
        hyps = module(batch)
        texts = module.tokenizers.tgt.decode_batch(hyps.token_lists())
        emitted = (hyps.lengths + 1).clamp(max=hyps.tokens.size(1)).tolist()  # EOS included where emitted
        src_lengths, scores = batch.src_lengths.tolist(), hyps.scores.tolist()
        tokens, attention = hyps.tokens.cpu(), hyps.attention.float().cpu()
        for r, text in enumerate(texts):
            b = r // hyps.n_best
            i, n, t = chunk[b], src_lengths[b], emitted[r]
            ids = batch.src[b, :n].tolist()
            results[i].append(Translation(text, scores[r], ids, tokens[r, :t].tolist(), attention[r, :t, :n]))
    return results


def translate_lines(
    module: Seq2SeqLitModule, lines: list[str], batch_size: int = 100, max_src_length: int | None = None
) -> list[str]:
    """The best translation of each of ``lines``, in order ("" for a blank line)."""
    return [hyps[0].text if hyps else "" for hyps in translate_nbest(module, lines, batch_size, max_src_length)]
