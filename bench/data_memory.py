"""Memory per training pair of the data path, and its time, on synthetic store arrays of N pairs.

    .venv/bin/python bench/data_memory.py [--pairs 3000000] [--workdir DIR]

A benchmark that prints figures, not a test. It writes, for each side, the offsets of N sentences of 1-100 pieces
(numpy seed 0) and a sparse ids file of the size they need (no text, no tokenizer: a 3M-pair store's arrays in a few
seconds), then in this process opens them as the corpus store does (:meth:`TokenArrays.open`, a
:class:`TranslationDataset`), makes the training sampler (batch size 64) and orders epochs 0 and 1. For each stage:
the growth of RSS over the RSS after the imports, in bytes per pair (pages of memory maps a process touches would count,
as they do in ``ru_maxrss``), the peak, and seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6  # ru_maxrss is in KiB on Linux


def write_arrays(folder: Path, pairs: int) -> None:
    rng = np.random.default_rng(0)
    for side in ("src", "tgt"):
        offsets = np.zeros(pairs + 1, dtype=np.int64)
        np.cumsum(rng.integers(1, 101, pairs), out=offsets[1:])
        np.save(folder / f"{side}.offsets.npy", offsets)
        with open(folder / f"{side}.bin", "wb") as f:
            f.truncate(int(offsets[-1]) * 2)  # uint16 ids, never read: a sparse file
    np.save(folder / "index.npy", np.arange(pairs, dtype=np.int64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=3_000_000)
    parser.add_argument("--workdir", type=Path, default=None, help="where the arrays go (default: temporary)")
    args = parser.parse_args()
    folder = args.workdir or Path(tempfile.mkdtemp(prefix="data_memory-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        if not (folder / "index.npy").is_file():
            write_arrays(folder, args.pairs)
        from seq2seq_lit.data.arrays import FileArray, TokenArrays
        from seq2seq_lit.data.batching import BucketBatchSampler, TranslationDataset

        base = rss_mb()
        rows = {}

        def stage(name: str, start: float) -> None:
            rows[name] = {
                "rss_bytes_per_pair": round((rss_mb() - base) * 1e6 / args.pairs, 1),
                "peak_bytes_per_pair": round(max(0.0, peak_mb() - base) * 1e6 / args.pairs, 1),
                "seconds": round(time.perf_counter() - start, 2),
            }

        start = time.perf_counter()
        sides = [TokenArrays.open(folder / f"{s}.bin", folder / f"{s}.offsets.npy", "<u2") for s in ("src", "tgt")]
        dataset = TranslationDataset(*sides, FileArray.npy(folder / "index.npy"))
        stage("open", start)
        start = time.perf_counter()
        sampler = BucketBatchSampler(dataset.lengths, 64, shuffle=True, seed=0)
        first = next(iter(sampler))
        [dataset[i] for i in first]
        stage("sampler + epoch 0 ordered", start)
        start = time.perf_counter()
        sampler.set_epoch(1)
        next(iter(sampler))
        stage("epoch 1 ordered", start)
        print(json.dumps({"pairs": args.pairs, "rss_after_imports_mb": round(base), "stages": rows}, indent=1))
    finally:
        if args.workdir is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
