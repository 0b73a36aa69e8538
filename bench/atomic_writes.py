"""What the rule for writes costs: seconds per checkpoint for a plain ``torch.save`` and for ``atomic_torch_save``
(temporary file, fsync, rename, folder fsync), on the folder given (default: ./logs, where runs write).

    .venv/bin/python bench/atomic_writes.py [--mib 150] [--repeats 5] [--folder logs]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from seq2seq_lit.utils.checkpoint_io import atomic_torch_save


def seconds(write, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        write()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=float, default=150.0, help="checkpoint size in MiB (float32 tensors)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--folder", type=Path, default=Path("logs"))
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    checkpoint = {"state_dict": {f"w{i}": torch.randn(int(args.mib * 2**18 / 8)) for i in range(8)}}
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        path = Path(folder) / "last.ckpt"
        plain = seconds(lambda: torch.save(checkpoint, path), args.repeats)
        atomic = seconds(lambda: atomic_torch_save(checkpoint, path), args.repeats)
    print(f"checkpoint of {args.mib:.0f} MiB in {args.folder}, median of {args.repeats}:")
    print(f"  torch.save         {plain:.3f} s")
    print(f"  atomic_torch_save  {atomic:.3f} s  ({atomic - plain:+.3f} s: fsync and rename)")


if __name__ == "__main__":
    main()
