"""How much gradient reaches each source position: ``python -m seq2seq_lit.gradients [ckpt_path=...] [data=...]
[split=test]`` (console script ``s2s-gradients``).

Measures, on the ``sentences`` longest sources of a split, the mean norm of d loss / d x_j (the encoder's input at
source position j) by distance from the source's end and from its start
(:mod:`seq2seq_lit.analysis.gradients`: what is measured and why). The model is a checkpoint (``ckpt_path=``, with
its tokenizers) or, with ``ckpt_path=null``, the model of the ``model`` overrides at initialization, seeded by
``seed``, with the tokenizers a training run of the same ``data`` overrides trains (from the same corpus store).
Writes into ``output_dir``: ``gradients.csv`` and ``gradients.md`` (columns ``offset, sentences, from_end,
from_start``) and ``gradients.png`` (:func:`~seq2seq_lit.plots.gradients.plot_gradient_profiles`). Config:
``conf/gradients.yaml``.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from .analysis.gradients import encoded_batches, gradient_profile
from .build import build_data, build_module, prepare_run
from .data import read_parallel
from .data.held_out import split_files
from .errors import ConfigError
from .inference.checkpoints import load_checkpoint, resolve_device
from .plots.gradients import plot_gradient_profiles
from .utils.atomic import atomic_open, atomic_write_text
from .utils.entry import CONFIG_PATH, exit_2_on_config_errors, run_entry_point
from .utils.loggers import markdown_table
from .utils.output_guard import check_output_dir, checkpoint_inputs

log = logging.getLogger(__name__)

OUTPUT_FILES = ("gradients.csv", "gradients.md", "gradients.png")
COLUMNS = ("offset", "sentences", "from_end", "from_start")


def measure_gradients(cfg: DictConfig) -> list[dict[str, Any]]:
    """Measure, and write the table and the plot into ``cfg.output_dir``; returns the table's rows
    (:meth:`~seq2seq_lit.analysis.gradients.GradientProfile.rows`).

    Raises:
        ConfigError: ``sentences`` or ``batch_size`` is below 1, ``split`` is not val or test, its files are wrong (see
            :func:`~seq2seq_lit.data.held_out.split_files`), an output file is an input, a checkpoint or a training run's
            record (:func:`~seq2seq_lit.utils.output_guard.check_output_dir`), or the split has no pair to measure.
        DataError: the checkpoint or the text files cannot be read, or the two files differ in line count.
    """
    for key in ("sentences", "batch_size"):
        value = cfg.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            for_all = ", or null for all" if key == "sentences" else ""
            raise ConfigError(f"{key}={value!r}; fix: a whole number of at least 1{for_all}")
    src_path, ref_path = split_files(cfg.data, cfg.split, key="split")
    output_dir = check_output_dir(
        "output_dir", cfg.output_dir, OUTPUT_FILES,
        inputs=[("source", src_path), ("reference", ref_path), *checkpoint_inputs(cfg.ckpt_path)],
        fix="pass output_dir=<a new folder>",
    )
    device = resolve_device(cfg.device)
    if cfg.ckpt_path:
        module = load_checkpoint(cfg.ckpt_path, device)
        label = cfg.label or str(Path(*Path(cfg.ckpt_path).parts[-3:]))  # <run>/checkpoints/<file>
    else:
        prepare_run(cfg)
        module = build_module(cfg.model, build_data(cfg.data, stage=None)).to(device)
        label = cfg.label or "init"
    sources, references = read_parallel(src_path, ref_path)
    chosen = _longest(module.tokenizers, sources, cfg.sentences)
    log.info("measuring the gradient by source position of %s on %d pairs of %s", label, len(chosen), src_path)
    batches = encoded_batches(
        module.tokenizers, [sources[k] for k in chosen], [references[k] for k in chosen], cfg.batch_size, device
    )
    rows = gradient_profile(module.net, batches).rows()

    output_dir.mkdir(parents=True, exist_ok=True)
    with atomic_open(output_dir / "gradients.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    table = [[r["offset"], r["sentences"], f"{r['from_end']:.3g}", f"{r['from_start']:.3g}"] for r in rows]
    atomic_write_text(output_dir / "gradients.md", markdown_table(COLUMNS, table) + "\n")
    with atomic_open(output_dir / "gradients.png", "wb") as f:
        plot_gradient_profiles({label: rows}, f, title=f"{label}: {len(chosen)} pairs of {src_path.name}")
    print(f"gradient by source position ({label}, {len(chosen)} pairs) written to {output_dir}")
    return rows


def _longest(tokenizers, sources: list[str], n: int | None) -> list[int]:
    """Corpus positions of the ``n`` sources with the most pieces (all for None), ties in corpus order, kept in
    corpus order."""
    if n is None or n >= len(sources):
        return list(range(len(sources)))
    lengths = [len(tokenizers.src.encode(line)) for line in sources]
    return sorted(sorted(range(len(sources)), key=lambda k: -lengths[k])[:n])


@exit_2_on_config_errors
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="gradients.yaml")
def main(cfg: DictConfig) -> list[dict[str, Any]]:
    """Hydra entry point."""
    return run_entry_point(measure_gradients, cfg)


if __name__ == "__main__":
    main()
