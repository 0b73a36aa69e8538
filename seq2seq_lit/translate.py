"""Translate text with a trained checkpoint: ``python -m seq2seq_lit.translate ckpt_path=... input=FILE output=FILE``.

Reads stdin and writes stdout when ``input`` / ``output`` are omitted. Writes exactly one detokenized line per input
line, in input order; an empty (or all-whitespace) input line gives an empty output line.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from .data import collate, read_lines
from .errors import ConfigError, DataError
from .lit_module import Seq2SeqLitModule
from .utils.entry import run_entry_point

log = logging.getLogger(__name__)


def load_checkpoint(ckpt_path: str | Path, device: str = "cpu") -> Seq2SeqLitModule:
    """Load a trained module with its tokenizers, weights-only (no pickled code runs), in eval mode.

    Raises:
        DataError: the file is missing or holds no tokenizers.
    """
    path = Path(ckpt_path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found. Fix: pass ckpt_path=PATH of a .ckpt written by training")
    module = Seq2SeqLitModule.load_from_checkpoint(path, map_location=device, weights_only=True)
    if module.tokenizers is None:
        raise DataError(f"{path}: the checkpoint carries no sentencepiece models; it was not written by seq2seq-lit training")
    return module.eval()


@torch.no_grad()
def translate_lines(module: Seq2SeqLitModule, lines: list[str], batch_size: int = 100) -> list[str]:
    """Translate ``lines``; returns one string per line, in order ("" for a blank line)."""
    outputs = [""] * len(lines)
    src_ids = module.tokenizers.src.encode_batch(lines)
    todo = sorted((i for i, line in enumerate(lines) if line.strip()), key=lambda i: len(src_ids[i]))
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        batch = collate([(i, src_ids[i], None) for i in chunk]).to(module.device)
        for i, hypothesis in zip(chunk, module.translate(batch)):
            outputs[i] = hypothesis
    return outputs


def _device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def translate(cfg: DictConfig) -> list[str]:
    if cfg.batch_size < 1:
        raise ConfigError(f"batch_size={cfg.batch_size}: must be at least 1")
    module = load_checkpoint(cfg.ckpt_path, _device(cfg.device))
    if cfg.get("search"):
        module.search = hydra.utils.instantiate(cfg.search)
    lines = read_lines(cfg.input) if cfg.input else sys.stdin.read().split("\n")
    if not cfg.input and lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line of stdin
    log.info("translating %d lines with %s", len(lines), cfg.ckpt_path)
    outputs = translate_lines(module, lines, cfg.batch_size)
    text = "".join(line + "\n" for line in outputs)
    if cfg.output:
        Path(cfg.output).write_text(text, encoding="utf-8")
        log.info("wrote %d lines to %s", len(outputs), cfg.output)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    return outputs


@hydra.main(version_base="1.3", config_path="../conf", config_name="translate.yaml")
def main(cfg: DictConfig) -> None:
    run_entry_point(translate, cfg)


if __name__ == "__main__":
    main()
