"""Translate text with a trained checkpoint: ``python -m seq2seq_lit.translate ckpt_path=... input=FILE output=FILE``.

Reads stdin and writes stdout when ``input`` / ``output`` are omitted; from stdin each line is translated as it arrives
and its output flushed at once (``input=FILE`` decodes in batches, which is faster). An empty input (file or stdin)
gives an empty output, with a warning. Output files are checked before the checkpoint is loaded and written atomically
(:mod:`seq2seq_lit.utils.atomic`): a failed run leaves an old output file as it was. Decodes with the checkpoint's
search unless ``model/search=greedy|beam|sample`` overrides it; ``ckpt_path=[a.ckpt,b.ckpt]`` decodes with the
ensemble of the checkpoints (:mod:`seq2seq_lit.inference.ensemble`); ``quantize=int8`` decodes with a dynamic int8 copy of the
model on a CPU (:mod:`seq2seq_lit.inference.quantization`). Output formats:

- plain (default): exactly one detokenized line per input line, in input order; an empty (or all-whitespace) input
  line gives an empty output line.
- n-best (``model.search.n_best`` > 1, or ``scores=true``): the Moses n-best format, ``i ||| translation ||| score``
  with the 0-based input line ``i``, ``n_best`` lines per input line, best first (``n_best`` lines with an empty
  translation and score 0 for an empty input line).

Optionally, for the best translation of each line: hard alignments in Pharaoh ``i-j`` format (``alignment_output``,
one line per input line; see :mod:`seq2seq_lit.alignment.hard`) and attention heatmaps as PNG files (``attention_dir``,
``{line:06d}.png``, 0-based line numbers; nothing for empty lines).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import hydra
from omegaconf import DictConfig

from .alignment.hard import hard_alignment, pharaoh
from .data import read_lines
from .data.corpus import decode_lines
from .errors import ConfigError
from .inference.decoding import load_decoder
from .inference.translation import Translation, translate_nbest
from .lit_module import Seq2SeqLitModule
from .plots.attention import plot_attention
from .utils.atomic import atomic_open, atomic_write_text
from .utils.entry import CONFIG_PATH, exit_2_on_config_errors, run_entry_point
from .utils.output_guard import check_output_path, checkpoint_inputs

log = logging.getLogger(__name__)


def _format(results: list[list[Translation]], n_best_format: bool, n_best: int = 1, first: int = 0) -> str:
    """The output lines of ``results``: plain, or Moses n-best numbering the input lines from ``first`` (``n_best``
    lines with an empty translation for an empty input line)."""
    if not n_best_format:
        return "".join((hyps[0].text if hyps else "") + "\n" for hyps in results)
    rows = []
    for i, hyps in enumerate(results, start=first):
        rows += [f"{i} ||| {h.text} ||| {h.score:.4f}\n" for h in hyps] or [f"{i} |||  ||| 0.0000\n"] * n_best
    return "".join(rows)


def _pieces(module: Seq2SeqLitModule, best: Translation) -> tuple[list[str], list[str]]:
    return module.tokenizers.src.id_to_pieces(best.src_ids), module.tokenizers.tgt.id_to_pieces(best.tgt_ids)


def _write_alignments(module: Seq2SeqLitModule, results: list[list[Translation]], path: str, level: str) -> None:
    lines = []
    for hyps in results:
        lines.append(pharaoh(hard_alignment(hyps[0].attention, *_pieces(module, hyps[0]), level=level)) if hyps else "")
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    log.info("wrote %d alignment lines (%s level, Pharaoh i-j) to %s", len(lines), level, path)


def _write_heatmaps(module: Seq2SeqLitModule, results: list[list[Translation]], folder: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for i, hyps in enumerate(results):
        if hyps:
            src_pieces, tgt_pieces = _pieces(module, hyps[0])
            fig = plot_attention(hyps[0].attention.numpy(), src_pieces, tgt_pieces, title=f"line {i}")
            with atomic_open(out / f"{i:06d}.png", "wb") as f:
                fig.savefig(f, format="png")
            written += 1
    log.info("wrote %d attention heatmaps to %s", written, out)


def translate(cfg: DictConfig) -> list[str]:
    """Run the translate entry point; returns the best translation of each input line.

    With ``input=FILE`` the lines are read at once and decoded in batches of similar length; from stdin each line is
    translated as it arrives and its output written and flushed before the next line is read, so that translate can
    sit in a pipe or serve a user typing sentences.
    """
    if cfg.batch_size < 1:
        raise ConfigError(f"batch_size={cfg.batch_size}: must be at least 1")
    if cfg.alignment_level not in ("word", "piece"):
        raise ConfigError(f"alignment_level={cfg.alignment_level!r}: choose word or piece")
    check_outputs(cfg)
    decoder = load_decoder(cfg)
    module, max_src_length = decoder.module, cfg.get("max_src_length")
    n_best_format, n_best = module.search.n_best > 1 or cfg.scores, module.search.n_best
    source = cfg.input or "stdin, line by line"
    paths = ", ".join(decoder.paths)
    log.info("translating %s with %s (quantize=%s), %s", source, paths, decoder.quantize, module.search)
    if cfg.input:
        results = translate_nbest(module, _input_lines(cfg.input), cfg.batch_size, max_src_length)
        write_translations(_format(results, n_best_format, n_best), cfg.output)
    else:
        results = []
        for line in _stdin_stream():
            results += translate_nbest(module, [line], 1, max_src_length, first_line=len(results) + 1)
            if not cfg.output:
                write_translations(_format(results[-1:], n_best_format, n_best, first=len(results) - 1), None)
        if not results:
            log.warning("<stdin> is empty: nothing to translate")
        if cfg.output:
            write_translations(_format(results, n_best_format, n_best), cfg.output)
    if cfg.output:
        log.info("wrote %d translations to %s", len(results), cfg.output)
    if cfg.alignment_output:
        _write_alignments(module, results, cfg.alignment_output, cfg.alignment_level)
    if cfg.attention_dir:
        _write_heatmaps(module, results, cfg.attention_dir)
    return [hyps[0].text if hyps else "" for hyps in results]


def check_outputs(cfg: DictConfig) -> None:
    """Check, before the checkpoint is loaded, that every output can be written (see
    :func:`~seq2seq_lit.utils.output_guard.check_output_path`); none may be the input, a checkpoint or a training
    run's record unless ``overwrite=true``.

    Raises:
        ConfigError: naming the key of the output that is a folder, lies in a missing folder, or is the input, a
            checkpoint or a run's record.
    """
    inputs = [("input", cfg.input)] if cfg.input else []
    inputs += checkpoint_inputs(cfg.get("ckpt_path"))
    for key in ("output", "alignment_output"):
        if cfg.get(key):
            check_output_path(key, cfg[key], inputs=inputs, overwrite=bool(cfg.get("overwrite")))
    if cfg.output and cfg.alignment_output and Path(cfg.output).resolve() == Path(cfg.alignment_output).resolve():
        raise ConfigError(f"output and alignment_output are both {cfg.output}. Fix: pass two different files")
    if cfg.attention_dir and Path(cfg.attention_dir).exists() and not Path(cfg.attention_dir).is_dir():
        raise ConfigError(f"attention_dir={cfg.attention_dir}: a file, not a folder. Fix: pass a folder for the PNG files")


def _input_lines(path: str) -> list[str]:
    """The lines to translate: of the file ``path``. No lines (an empty file) is not an error:
    nothing is translated, with a warning.

    Raises:
        DataError: the file is missing or unreadable, or the input is not UTF-8 text (:func:`read_lines`).
    """
    lines = [] if Path(path).is_file() and Path(path).stat().st_size == 0 else read_lines(path)
    if not lines:
        log.warning("%s is empty: nothing to translate", path)
    return lines


def write_translations(text: str, output: str | None) -> None:
    """Write formatted translations to the file ``output``, or to stdout (flushed) when it is None."""
    if output:
        atomic_write_text(output, text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def _stdin_stream() -> Iterator[str]:
    """The lines of stdin as they arrive, decoded as :func:`~seq2seq_lit.data.read_lines` decodes a file (UTF-8, LF
    or CRLF line ends, a leading byte order mark dropped).

    Raises:
        DataError: a line is not valid UTF-8 (the message gives the line and byte offset).
    """
    fix = "re-encode the input as UTF-8 before it reaches s2s-translate (e.g. ... | iconv -f latin1 -t utf-8 | s2s-translate ...)"
    offset = 0
    for number, raw in enumerate(iter(sys.stdin.buffer.readline, b""), start=1):
        (line,) = decode_lines(raw, "<stdin>", fix, first_line=number, offset=offset)  # one line: raw ends at its newline
        offset += len(raw)
        yield line


@exit_2_on_config_errors
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="translate.yaml")
def main(cfg: DictConfig) -> None:
    run_entry_point(translate, cfg)


if __name__ == "__main__":
    main()
