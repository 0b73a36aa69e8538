"""Word alignments from a model's attention under teacher forcing (forced decoding): the reference target is fed to the
decoder and each target word is linked to the source words it attends to most (Bahdanau et al. 2015, Fig. 3; the
attention of OpenNMT-py's ``-report_align``). Serves ``s2s-align``.

Shapes: B sentence pairs, T target pieces, S source pieces (EOS included).
"""

from __future__ import annotations

import torch

from ..data import collate
from ..lit_module import Seq2SeqLitModule
from .hard import encode_words, word_links, word_weights

Links = list[tuple[int, int]]


@torch.no_grad()
def attention_links(
    module: Seq2SeqLitModule,
    src_lines: list[str],
    tgt_lines: list[str],
    batch_size: int = 50,
    threshold: float | None = None,
) -> list[Links]:
    """``(source word, target word)`` links of each sentence pair from the model's attention under teacher forcing.

    A pair with an empty side has no links.
    """
    tokenizers = module.tokenizers
    module.eval()
    encoded = []
    for k, (src, tgt) in enumerate(zip(src_lines, tgt_lines)):
        src_ids, src_words = encode_words(tokenizers.src, src.split())
        tgt_ids, tgt_words = encode_words(tokenizers.tgt, tgt.split())
        encoded.append((k, src_ids, src_words, tgt_ids, tgt_words))
    todo = [e for e in encoded if e[1] and e[3]]
    result: list[Links] = [[] for _ in src_lines]
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        batch = collate([(k, src_ids, tgt_ids) for k, src_ids, _, tgt_ids, _ in chunk]).to(module.device)
        _, weights = module.net(batch.src, batch.src_lengths, batch.tgt_in)  # (B, T, S), EOS row and column included
        weights = weights.float().cpu()
        for b, (k, src_ids, src_words, tgt_ids, tgt_words) in enumerate(chunk):
            pieces = weights[b, : len(tgt_ids), : len(src_ids)]
            result[k] = word_links(word_weights(pieces, src_words, tgt_words), threshold)
    return result


def transposed(alignments: list[Links]) -> list[Links]:
    """Each sentence's links with source and target swapped, sorted: a reverse model's links in the forward order."""
    return [sorted((i, j) for j, i in links) for links in alignments]
