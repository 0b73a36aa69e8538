"""The first check on a machine with an NVIDIA GPU (or, with ``--cpu``, the same steps on the CPU).

    SEQ2SEQ_DATA_DIR=/path/to/data bash bench/gpu_check.sh [--cpu] [--steps 200] [--ddp-steps 50] [--out DIR]
        [--decode-limit N] [--no-tests] [-- HYDRA_OVERRIDE ...]

Run it after ``make install TORCH_SPEC="torch==2.13.0 --index-url <CUDA wheel index>"``; it needs the data folder
(``$SEQ2SEQ_DATA_DIR/multi30k``) and no network. On one GPU it takes a few minutes. Steps, each in its own process:

1. **unit tests** marked ``cuda`` (``pytest -m cuda``; skipped without a GPU).
2. **training**: ``s2s-train`` of the default model for ``--steps`` steps in each precision (32, 16-mixed, bf16-mixed
   on a GPU; 32 and bf16-mixed on the CPU) with input feeding on and off, then its test: the last training loss,
   test BLEU, training tokens/s (non-pad source + target tokens over the steps after the first 10, validation time
   excluded) and the peak memory of training (``torch.cuda.max_memory_allocated``; on the CPU the process' peak RSS).
3. **decoding**: the test split translated by the checkpoint of the float32 run with input feeding, greedy and
   beam 5, in sentences/s (``bench/train_decode.py``'s decoding child).
4. **DDP through NCCL** (gloo on the CPU): ``trainer=ddp trainer.devices=1`` for ``--ddp-steps`` steps.

Overrides after ``--`` go to every training and decoding run (e.g. ``data.batch_size=128``, or a smaller model and
``data=parallel_text ...`` as the test of this script does). It prints a table and writes every figure to
``<out>/gpu_check.json``; the runs' logs are in ``<out>/<run>/run.log``. Exit status 1 if a step failed (the table
says which). A check that prints figures, not a test: nothing here fails on speed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
QUIET = ["trainer.enable_progress_bar=false", "callbacks.progress_bar=null", "logger=csv"]


class TrainingSpeed(L.Callback):
    """Writes to ``path`` at the end of fitting: training tokens/s of the steps after ``warmup`` (time of validations
    in between excluded; tokens counted on the device) and the peak memory of training.

    It waits for the device only where it starts and stops a clock, not every step.
    """

    def __init__(self, path: str, warmup: int = 10) -> None:
        self.path, self.warmup = Path(path), warmup
        self._tokens: torch.Tensor | None = None
        self._start: float | None = None
        self._paused = 0.0
        self._steps = 0

    def _now(self, device: torch.device) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    def on_train_start(self, trainer, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup and self._start is None:
            self._start = self._now(pl_module.device)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._start is None:
            return
        tokens = batch.src_lengths.sum() + (batch.tgt_out != pl_module.hparams.pad_id).sum()
        self._tokens = tokens if self._tokens is None else self._tokens + tokens
        self._steps += 1
        if trainer.global_step == trainer.max_steps:
            self._write(pl_module, self._now(pl_module.device))

    def on_validation_start(self, trainer, pl_module) -> None:
        if self._start is not None and not trainer.sanity_checking:
            self._paused -= self._now(pl_module.device)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._start is not None and not trainer.sanity_checking:
            self._paused += self._now(pl_module.device)

    def _write(self, pl_module, end: float) -> None:
        seconds = end - self._start - self._paused
        cuda = pl_module.device.type == "cuda"
        peak_mib = torch.cuda.max_memory_allocated(pl_module.device) / 2**20 if cuda else peak_rss_mib()
        figures = {"timed_steps": self._steps, "timed_seconds": seconds, "tokens_per_s": int(self._tokens) / seconds,
                   "peak_memory_mib": peak_mib, "peak_memory_kind": "cuda allocated" if cuda else "process RSS"}
        self.path.write_text(json.dumps(figures) + "\n")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run(name: str, command: list[str], out: Path, env: dict[str, str] | None = None) -> tuple[int, float]:
    """Run ``command`` from the repository root, output to ``<out>/<name>/run.log``; (exit status, seconds)."""
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    print(f"[gpu_check] {name}: {' '.join(command)}", flush=True)
    start = time.perf_counter()
    with open(folder / "run.log", "w") as log_file:
        rc = subprocess.run(command, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}).returncode
    seconds = time.perf_counter() - start
    if rc != 0:
        tail = (folder / "run.log").read_text(errors="replace").splitlines()[-15:]
        print(f"[gpu_check] {name} FAILED (exit {rc}); end of {folder / 'run.log'}:\n" + "\n".join(tail), flush=True)
    return rc, seconds


def cuda_tests(out: Path) -> dict[str, Any]:
    rc, seconds = run("cuda_tests", [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider"], out)
    summary = (out / "cuda_tests" / "run.log").read_text(errors="replace")
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|deselected|errors?)", summary)}
    return {"ok": rc == 0, "exit": rc, "seconds": seconds, **counts}


def train_run(name: str, overrides: list[str], steps: int, out: Path) -> dict[str, Any]:
    """One ``s2s-train`` run of ``steps`` steps with :class:`TrainingSpeed`; its metrics.json and speed figures."""
    run_dir = out / name
    speed = run_dir / "speed.json"
    warmup = min(10, steps // 2)
    callback = f"+callbacks.training_speed={{_target_:gpu_check.TrainingSpeed,path:'{speed}',warmup:{warmup}}}"
    overrides = [f"trainer.max_steps={steps}", *overrides]
    command = [sys.executable, "-m", "seq2seq_lit.train", *QUIET, *overrides, callback, f"hydra.run.dir={run_dir}"]
    rc, seconds = run(name, command, out, env={"PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH), os.environ.get("PYTHONPATH")]))})
    result: dict[str, Any] = {"ok": rc == 0, "exit": rc, "seconds": seconds}
    if rc == 0:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        keep = ("train/loss", "val/bleu_best", "test/bleu", "global_step", "best_model_path")
        result.update({k: metrics.get(k) for k in keep})
        if speed.is_file():
            result.update(json.loads(speed.read_text()))
    return result


def decode_run(ckpt: str, overrides: list[str], limit: int, out: Path) -> dict[str, Any]:
    sys.path.insert(0, str(BENCH))
    from train_decode import run_child

    spec = {"overrides": overrides, "ckpt": ckpt, "limit": limit, "batch": 64, "beam_alpha": 1.0, "quantize": ["none"]}
    print(f"[gpu_check] decode: greedy and beam 5 with {ckpt}", flush=True)
    try:
        return {"ok": True, **run_child("decode", spec)}
    except subprocess.CalledProcessError as e:
        print(f"[gpu_check] decode FAILED (exit {e.returncode})", flush=True)
        return {"ok": False, "exit": e.returncode}


def environment(cpu: bool) -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    return {
        "torch": torch.__version__,
        "lightning": L.__version__,
        "cuda_runtime": torch.version.cuda,
        "device": torch.cuda.get_device_name(0) if cuda and not cpu else "cpu",
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "cpu_threads": torch.get_num_threads(),
    }


def precisions(cpu: bool) -> list[str]:
    if cpu:
        return ["32", "bf16-mixed"]  # 16-mixed (float16 autocast with GradScaler) is a GPU setting
    return ["32", "16-mixed"] + (["bf16-mixed"] if torch.cuda.is_bf16_supported() else [])


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(figures: dict[str, Any]) -> str:
    from rich.console import Console
    from rich.table import Table

    env = figures["environment"]
    table = Table(title=f"gpu_check on {env['device']} (torch {env['torch']}, {figures['steps']} steps per training)")
    for column in ("step", "ok", "train loss", "test BLEU", "tokens/s", "peak MiB", "sentences/s", "seconds"):
        table.add_column(column, justify="left" if column == "step" else "right")
    tests = figures["cuda_tests"]
    if tests:
        counts = ", ".join(f"{tests[k]} {k}" for k in ("passed", "skipped", "failed") if k in tests)
        table.add_row("unit tests -m cuda", _ok(tests), counts, "", "", "", "", f"{tests['seconds']:.1f}")
    for row in figures["training"]:
        table.add_row(
            f"train {row['precision']}, input feeding {'on' if row['input_feeding'] else 'off'}", _ok(row),
            _fmt(row.get("train/loss"), ".3f"), _fmt(row.get("test/bleu"), ".2f"), _fmt(row.get("tokens_per_s"), ",.0f"),
            _fmt(row.get("peak_memory_mib"), ",.0f"), "", f"{row['seconds']:.1f}",
        )
    decode = figures["decode"]
    for search in ("greedy", "beam5"):
        if search in decode:
            table.add_row(f"decode {search} ({decode['sentences']} sentences)", _ok(decode), "",
                          _fmt(decode[search]["bleu"], ".2f"), "", "", _fmt(decode[search]["sentences_per_s"], ",.1f"),
                          f"{decode[search]['seconds']:.1f}")
    if not decode.get("ok", True) or (decode and "greedy" not in decode):
        table.add_row("decode", _ok(decode), "", "", "", "", "", "")
    ddp = figures["ddp"]
    table.add_row(f"ddp 1 device ({ddp.get('backend')})", _ok(ddp), _fmt(ddp.get("train/loss"), ".3f"),
                  _fmt(ddp.get("test/bleu"), ".2f"), "", "", "", f"{ddp['seconds']:.1f}")
    console = Console(width=140, record=True, file=open(os.devnull, "w"))
    console.print(table)
    return console.export_text()


def _ok(row: dict[str, Any]) -> str:
    return "yes" if row.get("ok") else "FAILED"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="the same steps on the CPU (gloo for DDP)")
    parser.add_argument("--steps", type=int, default=200, help="steps of each training (default 200)")
    parser.add_argument("--ddp-steps", type=int, default=50, help="steps of the DDP run (default 50)")
    parser.add_argument("--decode-limit", type=int, default=0, help="decode only the first N test sentences (0: all)")
    parser.add_argument("--no-tests", action="store_true", help="skip the cuda-marked unit tests")
    parser.add_argument("--out", default=None, help="folder of the runs and gpu_check.json (default logs/gpu_check/<time>)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run (after --)")
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        print("gpu_check: torch sees no CUDA device. Fix: install a CUDA build (make install TORCH_SPEC=\"torch==2.13.0 "
              "--index-url <CUDA wheel index>\") on a machine with an NVIDIA GPU, or pass --cpu", file=sys.stderr)
        return 2
    out = Path(args.out or REPO / "logs" / "gpu_check" / time.strftime("%Y%m%d-%H%M%S")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    device = ["trainer.accelerator=cpu"] if args.cpu else ["trainer.accelerator=gpu"]
    overrides = [*device, *args.overrides]

    figures: dict[str, Any] = {"environment": environment(args.cpu), "steps": args.steps, "overrides": overrides}
    figures["cuda_tests"] = {} if args.no_tests else cuda_tests(out)
    figures["training"] = []
    for precision in precisions(args.cpu):
        for feeding in (True, False):
            name = f"train_{precision}_{'feed' if feeding else 'nofeed'}"
            run_overrides = [f"trainer.precision={precision}", f"model.decoder.input_feeding={str(feeding).lower()}", *overrides]
            row = train_run(name, run_overrides, args.steps, out)
            figures["training"].append({"precision": precision, "input_feeding": feeding, **row})
    reference = figures["training"][0]
    ckpt = reference.get("best_model_path") if reference["ok"] else None
    figures["decode"] = decode_run(ckpt, overrides, args.decode_limit, out) if ckpt else {"ok": False, "reason": "no checkpoint"}
    ddp_overrides = ["trainer=ddp", "trainer.devices=1", *overrides]
    figures["ddp"] = {"backend": "gloo" if args.cpu else "nccl", **train_run("ddp", ddp_overrides, args.ddp_steps, out)}

    table = format_table(figures)
    print(table, flush=True)
    (out / "gpu_check.json").write_text(json.dumps(figures, indent=2) + "\n")
    (out / "gpu_check.txt").write_text(table)
    print(f"[gpu_check] figures: {out / 'gpu_check.json'}", flush=True)
    steps = [figures["cuda_tests"] or {"ok": True}, *figures["training"], figures["decode"], figures["ddp"]]
    return 0 if all(step.get("ok") for step in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
