"""Word alignments from a model's attention: ``python -m seq2seq_lit.align ckpt_path=... src=FILE tgt=FILE
output=FILE [gold=FILE]`` (console script ``s2s-align``).

Force-decodes each target line (teacher forcing, no search) and turns the attention weights into links between the
whitespace-separated words of the two pre-tokenized files: piece weights summed into words
(:func:`~seq2seq_lit.alignment.hard.word_weights`), each target word linked to its most attended source word, and with
``threshold`` also to every source word it gives at least that weight. Writes Pharaoh ``i-j`` lines (0-based, source
word first) to ``output``.

With ``reverse_ckpt_path`` (a model of the other direction, target→source), the same files are also aligned by it
and the two directions symmetrized (:func:`~seq2seq_lit.alignment.scoring.symmetrize`); ``output`` then holds the
``symmetrize`` method's links. With ``gold``, every alignment (each direction, intersection, grow-diag-final) is scored
against the gold links (``gold_format=talp|pharaoh``, :mod:`~seq2seq_lit.alignment.files`): precision, recall and
AER (Och & Ney 2003), printed and written to ``scores_output`` as JSON. Config: ``conf/align.yaml``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from .alignment.files import FORMATS, read_alignments
from .alignment.forced import attention_links, transposed
from .alignment.hard import pharaoh
from .alignment.scoring import SYMMETRIZATIONS, score_alignments, symmetrize
from .data import read_parallel
from .errors import ConfigError
from .inference.checkpoints import load_checkpoint, resolve_device
from .utils.atomic import atomic_write_text
from .utils.entry import CONFIG_PATH, run_entry_point
from .utils.output_guard import check_output_path, checkpoint_inputs

log = logging.getLogger(__name__)

def align(cfg: DictConfig) -> dict[str, Any]:
    """Align ``cfg.src`` with ``cfg.tgt``, write ``cfg.output``, score against ``cfg.gold`` if given.

    Returns:
        ``{alignment name: {"precision", "recall", "aer", "predicted", "sure"}}`` with a gold file, else ``{}``.

    Raises:
        ConfigError: a required key is missing, or ``gold_format`` / ``symmetrize`` / ``threshold`` is not valid.
        DataError: unreadable or misaligned text, checkpoint or gold files (see
            :func:`~seq2seq_lit.alignment.files.read_alignments`).
    """
    for key in ("ckpt_path", "src", "tgt", "output"):
        if OmegaConf.is_missing(cfg, key) or not cfg[key]:
            raise ConfigError(f"{key} is not set; fix: pass {key}=... (see conf/align.yaml)")
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
        alignments["reverse"] = transposed(attention_links(reverse, tgt_lines, src_lines, cfg.batch_size, threshold))
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


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="align.yaml")
def main(cfg: DictConfig) -> dict[str, Any]:
    return run_entry_point(align, cfg)


if __name__ == "__main__":
    main()
