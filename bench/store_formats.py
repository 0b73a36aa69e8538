"""Corpus store formats compared on one encoded corpus: flat numpy arrays (the store's layout) against Hugging Face
``datasets`` (Arrow), and ``litdata`` where it installs.

    SEQ2SEQ_DATA_DIR=../shared/data .venv/bin/python bench/store_formats.py [--pairs 300000] [--workdir DIR]
        [--json PATH]

A benchmark that prints a table and writes JSON, not a test. Needs the ``bench`` extra (``pip install -e .[bench]``:
``datasets``); a format whose library is missing is reported as skipped.

The corpus is bench/data_scale.py's synthetic one (Multi30k training pairs joined 1-3 per line, seed 0) of
``--pairs`` pairs, encoded into a corpus store with ``data=parallel_text``'s tokenizer settings (the store is kept in
``--workdir`` and reused by later runs). Its training split's ids and offsets are then written in each format:

- **numpy**: the store's own layout, one flat uint16 ``.bin`` of ids and an int64 ``.offsets.npy`` per side, opened
  with :meth:`seq2seq_lit.data.arrays.TokenArrays.open` (read with ``pread``; the per-sentence lengths computed, as a
  run does).
- **datasets**: a ``datasets.Dataset`` of two ``list<uint16>`` columns (``Dataset.from_dict`` of pyarrow list arrays
  built from the same ids and offsets: Arrow's list layout is itself flat values plus int32 offsets), written with
  ``save_to_disk`` and opened with ``load_from_disk`` (memory-mapped Arrow files); lengths with
  ``pyarrow.compute.list_value_length``. Flat ids and offsets as columns of one table are not possible (the columns of
  a table have one length), so the list columns are Arrow's flat-plus-offsets form.

Measured for each, every reading figure in a fresh process: write time (from the arrays in memory, no fsync), import
time of the reading code (``seq2seq_lit.data.arrays`` with numpy; ``datasets`` and ``pyarrow.compute``), open time,
the time to read every pair of one epoch in a shuffled order, 64 positions at
a time as the batch sampler hands them out (each pair's source and target ids as Python lists, as the data set gives
them to ``collate``), the process' RSS after the imports, its growth by opening and by the epoch (mostly the pages of
the mapped files, which processes share), and the size on disk.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_scale import write_corpus  # noqa: E402  (the same deterministic corpus)

BATCH = 64
SIDES = ("src", "tgt")
TOKENIZER = {  # data=parallel_text's settings (conf/data/parallel_text.yaml)
    "joint": True,
    "per_side_vocab": True,
    "vocab_size": 8000,
    "model_type": "bpe",
    "character_coverage": 1.0,
    "input_sentence_size": 1_000_000,
}


def rss_mb() -> float:
    """Current resident set size of this process, MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def encoded_corpus(pairs: int, workdir: Path, multi30k: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(ids, offsets)] of the source and target side of the corpus' kept training pairs, read into memory."""
    from seq2seq_lit.data.corpus import ParallelText
    from seq2seq_lit.data.store import open_store

    folder = workdir / f"corpus{pairs}"
    if not (folder / "train.de").is_file():
        write_corpus(folder, pairs, multi30k)
    corpus = ParallelText(folder / "train.de", folder / "train.en", multi30k / "val.de", multi30k / "val.en")
    store = open_store(corpus, {**TOKENIZER, "cache_dir": str(workdir / "spm")}, 100, workdir / "store", progress=False)
    train = store.dataset("train")
    return [(np.asarray(side.ids), np.asarray(side.offsets)) for side in (train.src, train.tgt)]


# -- writers: (ids, offsets) of each side -> a folder -------------------------------------------------------------


def write_numpy(sides: list[tuple[np.ndarray, np.ndarray]], folder: Path) -> None:
    folder.mkdir(parents=True)
    for side, (ids, offsets) in zip(SIDES, sides):
        ids.astype("<u2").tofile(folder / f"{side}.bin")
        np.save(folder / f"{side}.offsets.npy", offsets.astype(np.int64))


def write_datasets(sides: list[tuple[np.ndarray, np.ndarray]], folder: Path) -> None:
    import datasets
    import pyarrow as pa

    columns = {
        side: pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(ids.astype(np.uint16)))
        for side, (ids, offsets) in zip(SIDES, sides)
    }
    datasets.Dataset.from_dict(columns).save_to_disk(str(folder))


WRITERS = {"numpy": write_numpy, "datasets": write_datasets}
LIBRARIES = {"numpy": "numpy", "datasets": "datasets"}


# -- readers, in a fresh process: open, then an epoch of shuffled batches -----------------------------------------


def read_numpy(folder: Path, batches: list[np.ndarray]) -> dict[str, float]:
    from seq2seq_lit.data.arrays import TokenArrays

    base = rss_mb()
    start = time.perf_counter()
    sides = [TokenArrays.open(folder / f"{side}.bin", folder / f"{side}.offsets.npy", "<u2") for side in SIDES]
    lengths = np.maximum(sides[0].lengths, sides[1].lengths)
    opened = time.perf_counter()
    rss_open = rss_mb()
    src, tgt = sides
    pieces = 0
    for batch in batches:
        for i in batch.tolist():
            s, t = src[i], tgt[i]
            pieces += len(s) + len(t)
    return _figures(base, start, opened, rss_open, pieces, lengths)


def read_datasets(folder: Path, batches: list[np.ndarray]) -> dict[str, float]:
    import datasets
    import pyarrow.compute as pc

    datasets.disable_progress_bars()
    base = rss_mb()
    start = time.perf_counter()
    data = datasets.load_from_disk(str(folder))
    lengths = np.maximum(
        *(pc.list_value_length(data.data.column(side)).to_numpy().astype(np.int32) for side in SIDES)
    )
    opened = time.perf_counter()
    rss_open = rss_mb()
    pieces = 0
    for batch in batches:
        rows = data[batch.tolist()]
        for s, t in zip(rows["src"], rows["tgt"]):
            pieces += len(s) + len(t)
    return _figures(base, start, opened, rss_open, pieces, lengths)


READERS = {"numpy": read_numpy, "datasets": read_datasets}


def _figures(base: float, start: float, opened: float, rss_open: float, pieces: int, lengths: np.ndarray) -> dict:
    return {
        "open_s": round(opened - start, 3),
        "epoch_s": round(time.perf_counter() - opened, 2),
        "rss_open_mb": round(rss_open - base, 1),
        "rss_epoch_mb": round(rss_mb() - base, 1),
        "rss_base_mb": round(base, 1),
        "pieces": pieces,
        "pairs": len(lengths),
    }


def child(fmt: str, folder: Path, pairs: int) -> None:
    """Measure reading ``folder`` in format ``fmt`` in this (fresh) process; print the figures as JSON."""
    start = time.perf_counter()
    if fmt == "datasets":
        import datasets  # noqa: F401  (timed apart from opening)
        import pyarrow.compute  # noqa: F401
    else:
        import seq2seq_lit.data.arrays  # noqa: F401
    import_s = time.perf_counter() - start
    order = np.random.default_rng(0).permutation(pairs)
    batches = [order[i : i + BATCH] for i in range(0, pairs, BATCH)]
    print(json.dumps({"import_s": round(import_s, 2), **READERS[fmt](folder, batches)}))


def measure(fmt: str, sides: list[tuple[np.ndarray, np.ndarray]], workdir: Path) -> dict:
    if importlib.util.find_spec(LIBRARIES[fmt]) is None:
        return {"format": fmt, "skipped": f"{LIBRARIES[fmt]} is not installed (pip install -e .[bench])"}
    folder = workdir / f"format-{fmt}"
    shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    WRITERS[fmt](sides, folder)
    write_s = time.perf_counter() - start
    pairs = len(sides[0][1]) - 1
    result = subprocess.run(
        [sys.executable, __file__, "--child", fmt, str(folder), str(pairs)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"reading {fmt} failed:\n{result.stderr}")
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return {"format": fmt, "write_s": round(write_s, 2), **figures, "disk_mb": round(size / 1e6, 1)}


def table(rows: list[dict]) -> str:
    lines = [
        "| format | write | import | open (fresh process) | shuffled epoch, batches of 64 | RSS after imports | "
        "RSS after open | RSS after epoch | on disk |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['format']} | skipped: {r['skipped']} ||||||||")
            continue
        lines.append(
            f"| {r['format']} | {r['write_s']:.2f} s | {r['import_s']:.2f} s | {r['open_s']:.3f} s | {r['epoch_s']:.1f} s | "
            f"{r['rss_base_mb']:.0f} MB | +{r['rss_open_mb']:.0f} MB | +{r['rss_epoch_mb']:.0f} MB | {r['disk_mb']:.1f} MB |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=300_000, help="training pairs of the synthetic corpus")
    parser.add_argument("--workdir", type=Path, default=None, help="corpus, store and formats (default: temporary)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--formats", default="numpy,datasets,litdata", help="comma-separated")
    parser.add_argument("--child", nargs=3, metavar=("FORMAT", "FOLDER", "PAIRS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), int(args.child[2]))
        return
    multi30k = Path(os.environ.get("SEQ2SEQ_DATA_DIR", "")).expanduser() / "multi30k"
    if not (multi30k / "train.de").is_file():
        raise SystemExit(f"{multi30k}/train.de not found; set SEQ2SEQ_DATA_DIR to the folder holding multi30k/")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="store_formats-"))
    try:
        sides = encoded_corpus(args.pairs, workdir, multi30k)
        rows = []
        for fmt in args.formats.split(","):
            if fmt == "litdata":
                rows.append({"format": "litdata", "skipped": LITDATA_SKIPPED})
            else:
                rows.append(measure(fmt, sides, workdir))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"pairs": args.pairs, "batch": BATCH, "rows": rows}, indent=1))


LITDATA_SKIPPED = (
    "not installed: pip resolves litdata's dependencies to a CUDA build of torch (cuda-toolkit, triton) in place of "
    "the CPU torch the project runs on"
)

if __name__ == "__main__":
    main()
