"""Corpus store at scale: build time, time to the first training step, and memory, for 30k, 300k and 3M pairs.

    SEQ2SEQ_DATA_DIR=../shared/data .venv/bin/python bench/data_scale.py [--sizes 30000,300000,3000000]
        [--workdir DIR] [--json PATH] [--keep] [HYDRA_OVERRIDE ...]

A benchmark that prints figures, not a test: nothing here passes or fails on speed.

Corpora (deterministic): Multi30k's training pairs joined 1-3 per line (numpy generator seed 0: for each line, the
number of pairs and which pairs), about 21 words per line; val and test are Multi30k's val and test_2016_flickr. They
are written into a new folder under ``--workdir`` (3M pairs: about 0.8 GB), removed afterwards unless ``--keep``.

For each size, each step in its own process, with the configuration's own cache folder (a fresh one for the build):

- **first build**: ``python -m seq2seq_lit.prepare data=parallel_text ...`` on an empty cache: the tokenizer is trained
  (on at most ``data.tokenizer.input_sentence_size`` sentences) and the store written. Wall time of the command, the
  build's own time (from the store's manifest: reading, training the tokenizer, encoding, writing, checksums) and
  pairs/s = training pairs / build time.
- **cached run**: ``python -m seq2seq_lit.train`` with the same data settings, the default model, 3 training steps, no
  validation, test or logger: seconds from starting the command to the first training step (``on_train_batch_start``),
  and the peak RSS (``ru_maxrss``) of the training process.
- **2 DDP processes**: the same run with ``trainer=ddp trainer.accelerator=cpu trainer.devices=2``: the peak RSS of
  each process.
- **store size**: bytes of the store folder on disk.

Figures depend on what else the machine runs; measure on a quiet one.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SEED = 0


class FirstStepProbe(L.Callback):
    """Writes ``{"rank", "first_step", "max_rss_kb"}`` of its process to ``<folder>/rank<r>.json``: the wall-clock
    time (``time.time()``) of the first training step, and the peak RSS at the end of training."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.first_step: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        if self.first_step is None:
            self.first_step = time.time()

    def on_train_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        self.folder.mkdir(parents=True, exist_ok=True)
        figures = {
            "rank": trainer.global_rank,
            "first_step": self.first_step,
            "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        }
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(figures))


def write_corpus(folder: Path, pairs: int, multi30k: Path) -> dict[str, Path]:
    """Training files of ``pairs`` lines, each 1-3 Multi30k training pairs joined by a space; Multi30k's val and test."""
    src = (multi30k / "train.de").read_text().splitlines()
    tgt = (multi30k / "train.en").read_text().splitlines()
    rng = np.random.default_rng(SEED)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"train_src": folder / "train.de", "train_tgt": folder / "train.en"}
    with open(paths["train_src"], "w") as fs, open(paths["train_tgt"], "w") as ft:
        for start in range(0, pairs, 100_000):
            n = min(100_000, pairs - start)
            counts = rng.integers(1, 4, size=n)
            picks = rng.integers(0, len(src), size=int(counts.sum())).tolist()
            ends = np.cumsum(counts).tolist()
            begin = 0
            src_lines, tgt_lines = [], []
            for end in ends:
                src_lines.append(" ".join(src[i] for i in picks[begin:end]))
                tgt_lines.append(" ".join(tgt[i] for i in picks[begin:end]))
                begin = end
            fs.write("\n".join(src_lines) + "\n")
            ft.write("\n".join(tgt_lines) + "\n")
    for split, stem in (("val", "val"), ("test", "test_2016_flickr")):
        for side, lang in (("src", "de"), ("tgt", "en")):
            paths[f"{split}_{side}"] = multi30k / f"{stem}.{lang}"
    return paths


def run(args: list[str], log: Path) -> float:
    """Run ``python -m args`` from the repository root, output to ``log``; returns its wall time in seconds."""
    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "1", "PYTHONPATH": str(REPO / "bench")}
    start = time.time()
    with open(log, "w") as out:
        result = subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed (exit {result.returncode}); see {log}")
    return time.time() - start


def training_run(data: list[str], folder: Path, extra: list[str], log: Path) -> tuple[float, list[dict]]:
    """A 3-step training run; (start time, the probe's figures of each process)."""
    probe = folder / "probe"
    shutil.rmtree(probe, ignore_errors=True)
    overrides = [
        *data,
        "trainer.max_steps=3",
        "trainer.limit_val_batches=0",
        "model/scheduler=constant",  # no validation: nothing for the plateau schedule and the best checkpoint to read
        "callbacks.model_checkpoint=null",
        "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false",
        "callbacks.progress_bar=null",
        "test=false",
        "logger=csv",
        f"hydra.run.dir={folder / ('run-' + log.stem)}",  # one folder per run: a finished run's folder is not reused
        f"+callbacks.probe._target_=data_scale.FirstStepProbe",
        f"+callbacks.probe.folder={probe}",
        *extra,
    ]
    start = time.time()
    run(["seq2seq_lit.train", *overrides], log)
    return start, [json.loads(p.read_text()) for p in sorted(probe.glob("rank*.json"))]


def measure(pairs: int, workdir: Path, multi30k: Path, overrides: list[str]) -> dict:
    folder = workdir / f"{pairs}"
    paths = write_corpus(folder / "corpus", pairs, multi30k)
    cache = folder / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    data = ["data=parallel_text", *(f"data.{k}={v}" for k, v in paths.items()), f"paths.cache_dir={cache}", *overrides]
    build_wall = run(["seq2seq_lit.prepare", *data, f"hydra.run.dir={folder / 'prepare'}"], folder / "prepare.log")
    (store,) = [p for p in (cache / "corpus_store").iterdir() if not p.name.startswith(".")]
    manifest = json.loads((store / "manifest.json").read_text())
    start, (single,) = training_run(data, folder, [], folder / "train.log")
    _, ddp = training_run(data, folder, ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"], folder / "ddp.log")
    return {
        "pairs": pairs,
        "kept_pairs": manifest["splits"]["train"]["pairs"],
        "build_wall_s": round(build_wall, 1),
        "build_s": manifest["build_seconds"],
        "build_pairs_per_s": round(pairs / manifest["build_seconds"]),
        "first_step_s": round(single["first_step"] - start, 1),
        "peak_rss_gb": round(single["max_rss_kb"] / 2**20, 2),
        "ddp_rss_gb": [round(r["max_rss_kb"] / 2**20, 2) for r in ddp],
        "store_mb": round(sum(p.stat().st_size for p in store.iterdir()) / 1e6, 1),
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| training pairs | first build (wall) | build pairs/s | cached run: start to first step | peak RSS | "
        "RSS of 2 DDP processes | store on disk |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['pairs']:,} | {r['build_s']:.1f} s ({r['build_wall_s']:.1f} s) | {r['build_pairs_per_s']:,} | "
            f"{r['first_step_s']:.1f} s | {r['peak_rss_gb']:.2f} GB | "
            f"{' / '.join(f'{x:.2f}' for x in r['ddp_rss_gb'])} GB | {r['store_mb']:,.0f} MB |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="30000,300000,3000000", help="training pairs of each corpus, comma-separated")
    parser.add_argument("--workdir", type=Path, default=None, help="where corpora and caches go (default: a temporary folder)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the corpora and caches")
    args, overrides = parser.parse_known_args()
    multi30k = Path(os.environ.get("SEQ2SEQ_DATA_DIR", "")).expanduser() / "multi30k"
    if not (multi30k / "train.de").is_file():
        raise SystemExit(f"{multi30k}/train.de not found; set SEQ2SEQ_DATA_DIR to the folder holding multi30k/")
    # A folder of its own, even inside --workdir: removing it never removes what was there before.
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="data_scale-", dir=args.workdir))
    rows = []
    try:
        for pairs in (int(s) for s in args.sizes.split(",")):
            rows.append(measure(pairs, workdir, multi30k, overrides))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "overrides": overrides}, indent=1))


if __name__ == "__main__":
    main()
