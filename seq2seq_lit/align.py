"""Word alignments from a model's attention: ``python -m seq2seq_lit.align ckpt_path=... src=FILE tgt=FILE
output=FILE [gold=FILE]`` (console script ``s2s-align``).

Force-decodes each target line (teacher forcing, no search) and turns the attention weights into links between the
whitespace-separated words of the two pre-tokenized files: piece weights summed into words
(:func:`~seq2seq_lit.alignment.word_weights`), each target word linked to its most attended source word, and with
``threshold`` also to every source word it gives at least that weight. Writes Pharaoh ``i-j`` lines (0-based, source
word first) to ``output``.

With ``reverse_ckpt_path`` (a model of the other direction, target→source), the same files are also aligned by it
and the two directions symmetrized (:func:`~seq2seq_lit.alignment_metrics.symmetrize`); ``output`` then holds the
``symmetrize`` method's links. With ``gold``, every alignment (each direction, intersection, grow-diag-final) is scored
against the gold links (``gold_format=talp|pharaoh``, :mod:`~seq2seq_lit.alignment_files`): precision, recall and
AER (Och & Ney 2003), printed and written to ``scores_output`` as JSON. Config: ``seq2seq_lit/conf/align.yaml``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from .alignment import encode_words, pharaoh, word_links, word_weights
from .alignment_files import FORMATS, read_alignments
from .alignment_metrics import SYMMETRIZATIONS, score_alignments, symmetrize
from .checkpoints import load_checkpoint, resolve_device
from .data import collate, read_parallel
from .errors import ConfigError
from .lit_module import Seq2SeqLitModule
from .utils.atomic import atomic_write_text
from .utils.entry import CONFIG_DIR, run_entry_point
from .utils.output_guard import check_output_path, checkpoint_inputs

log = logging.getLogger(__name__)

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


def _transposed(alignments: list[Links]) -> list[Links]:
    return [sorted((i, j) for j, i in links) for links in alignments]


def align(cfg: DictConfig) -> dict[str, Any]:
    """Align ``cfg.src`` with ``cfg.tgt``, write ``cfg.output``, score against ``cfg.gold`` if given.

    Returns:
        ``{alignment name: {"precision", "recall", "aer", "predicted", "sure"}}`` with a gold file, else ``{}``.

    Raises:
        ConfigError: a required key is missing, or ``gold_format`` / ``symmetrize`` / ``threshold`` is not valid.
        DataError: unreadable or misaligned text, checkpoint or gold files (see
            :func:`~seq2seq_lit.alignment_files.read_alignments`).
    """
    for key in ("ckpt_path", "src", "tgt", "output"):
        if OmegaConf.is_missing(cfg, key) or not cfg[key]:
            raise ConfigError(f"{key} is not set; fix: pass {key}=... (see seq2seq_lit/conf/align.yaml)")
    if cfg.gold_format not in FORMATS:
        raise ConfigError(f"gold_format={cfg.gold_format!r}; fix: use one of {', '.join(FORMATS)}")
    if cfg.symmetrize not in SYMMETRIZATIONS:
        raise ConfigError(f"symmetrize={cfg.symmetrize!r}; fix: use one of {', '.join(SYMMETRIZATIONS)}")
    if cfg.threshold is not None and not 0.0 < float(cfg.threshold) <= 1.0:
        raise ConfigError(f"threshold={cfg.threshold!r}; fix: use a weight in (0, 1], or null for one link per word")
    inputs = [("src", cfg.src), ("tgt", cfg.tgt), ("gold", cfg.gold), *checkpoint_inputs(cfg.ckpt_path)]
    inputs += checkpoint_inputs(cfg.reverse_ckpt_path, "reverse_ckpt_path")
    output = check_output_path("output", cfg.output, inputs=inputs)
    if cfg.scores_output:
        check_output_path("scores_output", cfg.scores_output, inputs=inputs)
        if Path(cfg.scores_output).resolve() == output.resolve():
            raise ConfigError(f"output and scores_output are both {output}. Fix: pass two different files")
    if cfg.gold and not Path(cfg.gold).is_file():
        raise ConfigError(f"gold={cfg.gold}: no such file. Fix: pass the gold alignment file of these lines, or gold=null")
    src_lines, tgt_lines = read_parallel(cfg.src, cfg.tgt)
    gold = None
    if cfg.gold:
        gold = read_alignments(cfg.gold, src_lines, tgt_lines, cfg.gold_format, f"{cfg.src} / {cfg.tgt}")

    device = resolve_device(cfg.device)
    threshold = None if cfg.threshold is None else float(cfg.threshold)
    forward = load_checkpoint(cfg.ckpt_path, device)
    alignments = {"forward": attention_links(forward, src_lines, tgt_lines, cfg.batch_size, threshold)}
    if cfg.reverse_ckpt_path:
        reverse = load_checkpoint(cfg.reverse_ckpt_path, device)
        alignments["reverse"] = _transposed(attention_links(reverse, tgt_lines, src_lines, cfg.batch_size, threshold))
        both = list(zip(alignments["forward"], alignments["reverse"]))
        for method in dict.fromkeys(("intersection", "grow-diag-final", cfg.symmetrize)):
            alignments[method] = [symmetrize(f, r, method) for f, r in both]
    written = cfg.symmetrize if cfg.reverse_ckpt_path else "forward"
    atomic_write_text(output, "".join(pharaoh(links) + "\n" for links in alignments[written]))
    log.info("wrote %d alignment lines (%s, Pharaoh i-j, 0-based) to %s", len(src_lines), written, output)
    if gold is None:
        return {}
    scores = {name: score_alignments(links, gold).as_dict() for name, links in alignments.items()}
    for name, s in scores.items():
        print(
            f"{name:16s} precision {s['precision']:.3f}  recall {s['recall']:.3f}  AER {s['aer']:.3f}  "
            f"({s['predicted']} links, {s['sure']} sure gold)"
        )
    if cfg.scores_output:
        report = json.dumps({"gold": str(cfg.gold), "scores": scores}, indent=2) + "\n"
        atomic_write_text(cfg.scores_output, report)
    return scores


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="align.yaml")
def main(cfg: DictConfig) -> dict[str, Any]:
    return run_entry_point(align, cfg)


if __name__ == "__main__":
    main()
