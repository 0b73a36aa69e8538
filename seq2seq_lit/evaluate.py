"""Score a checkpoint on one split: ``python -m seq2seq_lit.evaluate ckpt_path=... [data.split=test]`` (console script
``s2s-eval``).

Reads the raw source and reference lines of the split (``data`` picks the corpus, as for training, but no tokenizer is
trained: the checkpoint's sentencepiece models are used), translates the sources with
:func:`~seq2seq_lit.translate.translate_lines` and the checkpoint's search (or ``model/search=...``), and scores the
detokenized output with sacreBLEU: BLEU, chrF and TER with their signatures, and BLEU by source length (buckets of
``length_buckets``, by default the checkpoint's). Writes
``hypotheses.txt`` (one line per source line) and ``metrics.json`` into ``output_dir`` and prints a summary.
``ckpt_path=[a.ckpt,b.ckpt]`` scores the ensemble of the checkpoints (:mod:`seq2seq_lit.inference.ensemble`).
``quantize=int8`` decodes with a dynamic int8 copy of the model on a CPU (:mod:`seq2seq_lit.inference.quantization`).
Config: ``conf/evaluate.yaml``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from .data import read_parallel
from .data.held_out import split_files
from .errors import ConfigError
from .inference.checkpoints import AVERAGED_KEY, read_checkpoint
from .inference.decoding import load_decoder
from .inference.translation import translate_lines
from .metrics import LENGTH_EDGES, bleu_by_source_length, corpus_metrics, length_buckets
from .utils.atomic import atomic_write_text
from .utils.entry import CONFIG_PATH, exit_2_on_config_errors, run_entry_point
from .utils.output_guard import check_output_dir, checkpoint_inputs

log = logging.getLogger(__name__)

OUTPUT_FILES = ("hypotheses.txt", "metrics.json")


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Translate and score ``cfg.data.split``; returns the metrics also written to ``metrics.json``.

    Raises:
        ConfigError: ``ckpt_path`` is missing, ``batch_size`` < 1, the split or its files are wrong (see
            :func:`~seq2seq_lit.data.held_out.split_files`), ``output_dir`` holds a training run's ``metrics.json`` or
            an input (see :func:`~seq2seq_lit.utils.output_guard.check_output_dir`), or ``quantize`` is not valid here (see
            :func:`~seq2seq_lit.inference.quantization.check_quantize`).
        DataError: the checkpoint or the text files cannot be read, or the two files differ in line count.
    """
    if OmegaConf.is_missing(cfg, "ckpt_path") or not cfg.ckpt_path:
        raise ConfigError("no checkpoint; fix: pass ckpt_path=PATH of a .ckpt written by training or s2s-average")
    if cfg.batch_size < 1:
        raise ConfigError(f"batch_size={cfg.batch_size}: must be at least 1")
    split = cfg.data.get("split", "test")
    src_path, ref_path = split_files(cfg.data, split)
    output_dir = check_output_dir(
        "output_dir", cfg.output_dir, OUTPUT_FILES,
        inputs=[("source", src_path), ("reference", ref_path), *checkpoint_inputs(cfg.ckpt_path)],
        fix="pass output_dir=<a new folder>, e.g. output_dir=<run>/eval-test",
    )
    sources, references = read_parallel(src_path, ref_path)

    decoder = load_decoder(cfg)
    module, device = decoder.module, decoder.device
    edges = cfg.get("length_buckets") or module.hparams.get("length_buckets", LENGTH_EDGES)
    length_buckets(edges)  # a ConfigError before decoding, not after
    stored = [read_checkpoint(path) for path in decoder.paths]
    log.info(
        "translating %d sentences of %s with %s on %s (quantize=%s)",
        len(sources), src_path, ", ".join(decoder.paths), device, decoder.quantize,
    )

    start = time.perf_counter()
    hypotheses = translate_lines(module, sources, cfg.batch_size)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start

    scores = corpus_metrics(hypotheses, references)
    metrics: dict[str, Any] = {
        **_checkpoint_metadata(decoder.paths, stored),
        "split": split,
        "source_file": str(src_path),
        "reference_file": str(ref_path),
        "sentences": len(sources),
        "search": decoder.search,
        **{name: score["score"] for name, score in scores.items()},
        "signatures": {name: score["signature"] for name, score in scores.items()},
        "details": {name: score["details"] for name, score in scores.items()},
        "bleu_by_source_length": bleu_by_source_length(sources, hypotheses, references, edges),
        "decode_seconds": round(seconds, 3),
        "sentences_per_second": round(len(sources) / max(seconds, 1e-9), 1),
        "device": device,
        "quantize": decoder.quantize,
        "batch_size": cfg.batch_size,
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output_dir / "hypotheses.txt", "".join(h + "\n" for h in hypotheses))
    atomic_write_text(output_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    _print_summary(metrics, output_dir)
    return metrics


def _checkpoint_metadata(paths: list[str], stored: list[dict[str, Any]]) -> dict[str, Any]:
    """``ckpt_path``, ``global_step`` and ``averaged_global_steps`` of one checkpoint, or lists of them for an
    ensemble."""
    rows = [
        {
            "ckpt_path": path,
            "global_step": c.get("global_step"),
            "averaged_global_steps": c.get(AVERAGED_KEY, {}).get("global_steps"),
        }
        for path, c in zip(paths, stored)
    ]
    return rows[0] if len(rows) == 1 else {key: [row[key] for row in rows] for key in rows[0]}


def _print_summary(metrics: dict[str, Any], output_dir: Path) -> None:
    paths = metrics["ckpt_path"] if isinstance(metrics["ckpt_path"], list) else [metrics["ckpt_path"]]
    names = " + ".join(Path(p).name for p in paths)
    table = Table(title=f"{metrics['split']}: {metrics['sentences']} sentences, {names}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in ("bleu", "chrf", "ter"):
        table.add_row(name.upper() if name != "chrf" else "chrF", f"{metrics[name]:.2f}")
    for label, bucket in metrics["bleu_by_source_length"].items():
        table.add_row(f"BLEU, source {label} words ({bucket['sentences']})", f"{bucket['bleu']:.2f}")
    table.add_row("decoding seconds", f"{metrics['decode_seconds']:.2f}")
    table.add_row("sentences/s", f"{metrics['sentences_per_second']:.1f}")
    console = Console()
    console.print(table)
    for name, signature in metrics["signatures"].items():
        console.print(f"{name} signature: {signature}", soft_wrap=True)
    console.print(f"hypotheses and metrics written to {output_dir}")


@exit_2_on_config_errors
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="evaluate.yaml")
def main(cfg: DictConfig) -> dict[str, Any]:
    return run_entry_point(evaluate, cfg)


if __name__ == "__main__":
    main()
