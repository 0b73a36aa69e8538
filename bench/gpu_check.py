"""The first check on a machine with an NVIDIA GPU (or, with ``--cpu``, the same steps on the CPU), and where its
time goes.

    SEQ2SEQ_DATA_DIR=/path/to/data bash bench/gpu_check.sh [--cpu] [--steps 200] [--batch-sizes 64,256,1024]
        [--compile-modes default,reduce-overhead] [--decode-batches 64,512] [--budget-s S] [--out DIR] [-- OVERRIDE ...]
    bash bench/device/run.sh          # on the lent GPU machine, which can install nothing (docs/performance.md)

It needs the data folder (``$SEQ2SEQ_DATA_DIR/multi30k``), no network. Steps, each training in its own process, in
this order (``--budget-s`` marks what no longer fits as skipped and stops a step that would run past it):

1. **matmul peak**: TFLOP/s of a ``--matmul-size`` square product in bfloat16 and float32 on random data: the
   measured ceiling the training rows are set against.
2. **training**: ``s2s-train`` of the default model for ``--steps`` steps per row: the reference (the first
   precision, bf16-mixed where supported; the first batch size; input feeding on), the other precisions (32,
   16-mixed), the other batch sizes, each ``--compile-modes`` mode (``model.compile``, with
   ``data.pad_to_multiple=--pad-to-multiple``) next to its eager twin at the same padding, and input feeding off.
   Per row: the last training loss, test BLEU, training tokens/s (non-pad source + target tokens over the steps after
   ``--warmup``, validation time excluded), the matrix-product FLOP/s of those steps (``bench/flops.py``) and its
   fraction of the measured bf16 peak, and the peak memory (``torch.cuda.max_memory_allocated``; on the CPU the
   process' peak RSS).
3. **profile** (``bench/step_profile.py``): ``--profile-steps`` steps of the reference run's warm-up under
   ``torch.profiler``: CUDA kernels launched per step, GPU busy time against wall time per step, the top kernels
   (on a CPU the top-level operators instead).
4. **compile vs eager**: each compiled row's tokens/s over its eager twin's, with a verdict in words.
5. **decoding** (run right after the reference training): the test split translated by the reference run's
   checkpoint, greedy and beam 5, at each ``--decode-batches`` size, in sentences/s with BLEU
   (``bench/train_decode.py``'s decoding child).
6. **unit tests** marked ``cuda`` (``pytest -m cuda``; skipped without a GPU).
7. **DDP through NCCL** (gloo on the CPU): ``trainer=ddp trainer.devices=1`` for ``--ddp-steps`` steps.

Overrides after ``--`` go to every training and decoding run (e.g. a smaller model and ``data=parallel_text ...`` as
the test of this script does). It prints a table and writes every figure to ``<out>/gpu_check.json`` and the table
to ``<out>/gpu_check.txt``; the runs' logs are in ``<out>/<run>/run.log``. Exit status 1 if a step failed or was
stopped by the budget (the table says which). A check that prints figures, not a test: nothing here fails on speed.
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

import hydra
import lightning as L
import torch

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
QUIET = ["trainer.enable_progress_bar=false", "callbacks.progress_bar=null", "logger=csv"]


class TrainingSpeed(L.Callback):
    """Writes to ``path`` at the end of fitting: training tokens/s of the steps after ``warmup`` (time of validations
    in between excluded; tokens counted on the device), their matrix-product FLOPs per second (``bench/flops.py``:
    real tokens only; None for a model it does not count), the peak memory of training, and how many timed steps met
    a batch shape (B, S, T) that no earlier step had (each one compiles anew under ``model.compile``).

    It waits for the device only where it starts and stops a clock, not every step: the lengths each FLOP count needs
    stay on the device until the end.
    """

    def __init__(self, path: str, warmup: int = 10) -> None:
        self.path, self.warmup = Path(path), warmup
        self._tokens: torch.Tensor | None = None
        self._start: float | None = None
        self._paused = 0.0
        self._steps = 0
        self._lengths: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._shapes: set[tuple[int, ...]] = set()
        self._new_shapes = 0

    def _now(self, device: torch.device) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    def on_train_start(self, trainer, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        shape = (*batch.src.shape, batch.tgt_out.size(1))
        if self._start is not None and shape not in self._shapes:
            self._new_shapes += 1
        self._shapes.add(shape)
        if trainer.global_step == self.warmup and self._start is None:
            self._start = self._now(pl_module.device)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._start is None:
            return
        tgt_lengths = (batch.tgt_out != pl_module.hparams.pad_id).sum(1)
        tokens = batch.src_lengths.sum().to(tgt_lengths.device, non_blocking=True) + tgt_lengths.sum()
        self._tokens = tokens if self._tokens is None else self._tokens + tokens
        self._lengths.append((batch.src_lengths, tgt_lengths))
        self._steps += 1
        if trainer.global_step == trainer.max_steps:
            self._write(pl_module, self._now(pl_module.device))

    def on_validation_start(self, trainer, pl_module) -> None:
        if self._start is not None and not trainer.sanity_checking:
            self._paused -= self._now(pl_module.device)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._start is not None and not trainer.sanity_checking:
            self._paused += self._now(pl_module.device)

    def _flops(self, net) -> int | None:
        from flops import training_step_flops

        try:
            return sum(training_step_flops(net, src, tgt, padded=False).total for src, tgt in self._lengths)
        except NotImplementedError:
            return None

    def _write(self, pl_module, end: float) -> None:
        seconds = end - self._start - self._paused
        cuda = pl_module.device.type == "cuda"
        peak_mib = torch.cuda.max_memory_allocated(pl_module.device) / 2**20 if cuda else peak_rss_mib()
        flops = self._flops(pl_module.net)
        figures = {"timed_steps": self._steps, "timed_seconds": seconds, "s_per_step": seconds / self._steps,
                   "tokens_per_s": int(self._tokens) / seconds,
                   "flops_per_s": None if flops is None else flops / seconds,
                   "peak_memory_mib": peak_mib, "peak_memory_kind": "cuda allocated" if cuda else "process RSS",
                   "shapes": len(self._shapes), "timed_steps_with_a_new_shape": self._new_shapes}
        self.path.write_text(json.dumps(figures) + "\n")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class Budget:
    """The check's time budget: the seconds left, and whether a step of about ``need`` seconds still fits."""

    def __init__(self, seconds: float | None) -> None:
        self.end = None if not seconds else time.perf_counter() + seconds

    def left(self) -> float | None:
        return None if self.end is None else self.end - time.perf_counter()

    def fits(self, need: float) -> bool:
        return self.end is None or self.left() >= need


SKIPPED = {"ok": True, "skipped": "time budget spent (--budget-s)"}


def run(name: str, command: list[str], out: Path, env: dict[str, str] | None = None,
        timeout: float | None = None) -> tuple[int, float]:
    """Run ``command`` from the repository root, output to ``<out>/<name>/run.log``, stopped after ``timeout``
    seconds (exit status 124, as timeout(1)); (exit status, seconds)."""
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    print(f"[gpu_check] {name}: {' '.join(command)}", flush=True)
    start = time.perf_counter()
    with open(folder / "run.log", "w") as log_file:
        try:
            rc = subprocess.run(command, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = 124
    seconds = time.perf_counter() - start
    if rc != 0:
        tail = (folder / "run.log").read_text(errors="replace").splitlines()[-15:]
        why = f"stopped after {timeout:.0f} s (--budget-s)" if rc == 124 else f"exit {rc}"
        print(f"[gpu_check] {name} FAILED ({why}); end of {folder / 'run.log'}:\n" + "\n".join(tail), flush=True)
    print(f"[gpu_check] {name}: {seconds:.1f} s", flush=True)
    return rc, seconds


def cuda_tests(out: Path, budget: Budget) -> dict[str, Any]:
    rc, seconds = run("cuda_tests", [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider"], out,
                      timeout=budget.left())
    summary = (out / "cuda_tests" / "run.log").read_text(errors="replace")
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|deselected|errors?)", summary)}
    return {"ok": rc == 0, "exit": rc, "seconds": seconds, **counts}


def _bench_env() -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH), os.environ.get("PYTHONPATH")]))}


def train_run(name: str, overrides: list[str], steps: int, out: Path, budget: Budget, warmup: int = 10,
              profile_steps: int = 0) -> dict[str, Any]:
    """One ``s2s-train`` run of ``steps`` steps with :class:`TrainingSpeed` timing the steps after ``warmup`` (and,
    with ``profile_steps``, :class:`step_profile.StepProfile` over that many steps inside the warm-up); its
    metrics.json, speed and profile figures."""
    run_dir = out / name
    speed, profile = run_dir / "speed.json", run_dir / "profile.json"
    warmup = min(warmup, steps // 2)
    callbacks = [f"+callbacks.training_speed={{_target_:gpu_check.TrainingSpeed,path:'{speed}',warmup:{warmup}}}"]
    profile_steps = min(profile_steps, warmup - 1)
    if profile_steps > 0:
        first = max(1, (warmup - profile_steps) // 2)  # after the first steps' one-off work, done before timing
        callbacks.append(f"+callbacks.step_profile={{_target_:step_profile.StepProfile,path:'{profile}',"
                         f"start:{first},steps:{profile_steps}}}")
    overrides = [f"trainer.max_steps={steps}", *overrides]
    command = [sys.executable, "-m", "seq2seq_lit.train", *QUIET, *overrides, *callbacks, f"hydra.run.dir={run_dir}"]
    rc, seconds = run(name, command, out, env=_bench_env(), timeout=budget.left())
    result: dict[str, Any] = {"ok": rc == 0, "exit": rc, "seconds": seconds}
    if rc == 124:
        result["stopped"] = "time budget spent (--budget-s)"
    if rc == 0:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        keep = ("train/loss", "val/bleu_best", "test/bleu", "global_step", "best_model_path")
        result.update({k: metrics.get(k) for k in keep})
        if speed.is_file():
            result.update(json.loads(speed.read_text()))
        if profile.is_file():
            result["profile"] = json.loads(profile.read_text())
    return result


def decode_run(ckpt: str, overrides: list[str], limit: int, batch: int, budget: Budget) -> dict[str, Any]:
    """Greedy and beam-5 decoding of the test split by ``ckpt`` in batches of ``batch`` sentences, in a child process
    (``bench/train_decode.py``); sentences/s and BLEU."""
    sys.path.insert(0, str(BENCH))
    from train_decode import run_child

    spec = {"overrides": overrides, "ckpt": ckpt, "limit": limit, "batch": batch, "beam_alpha": 1.0, "quantize": ["none"]}
    print(f"[gpu_check] decode: greedy and beam 5, batch {batch}, with {ckpt}", flush=True)
    start = time.perf_counter()
    try:
        result = {"ok": True, **run_child("decode", spec, timeout=budget.left())}
    except subprocess.CalledProcessError as e:
        print(f"[gpu_check] decode FAILED (exit {e.returncode})", flush=True)
        result = {"ok": False, "exit": e.returncode}
    except subprocess.TimeoutExpired:
        print("[gpu_check] decode stopped: time budget spent (--budget-s)", flush=True)
        result = {"ok": False, "exit": 124, "stopped": "time budget spent (--budget-s)"}
    print(f"[gpu_check] decode batch {batch}: {time.perf_counter() - start:.1f} s", flush=True)
    return result


def matmul_peak(cpu: bool, size: int, seconds: float = 1.0) -> dict[str, Any]:
    """The measured ceiling: TFLOP/s of a ``size`` x ``size`` matrix product in bfloat16 and float32 on the check's
    device, the best of repeated runs over ``seconds`` each, on random data (``bench/flops.py``)."""
    sys.path.insert(0, str(BENCH))
    from flops import matmul_gflops

    from seq2seq_lit.utils.precision import avoid_unusable_amx

    device = "cpu" if cpu else "cuda"
    avoid_unusable_amx("bf16-mixed", "cpu" if cpu else "gpu")
    start = time.perf_counter()
    figures = {"size": size, "device": device,
               "bf16_tflops": matmul_gflops(torch.bfloat16, size, device, seconds) / 1e3,
               "fp32_tflops": matmul_gflops(torch.float32, size, device, seconds) / 1e3,
               "tf32": bool(torch.backends.cuda.matmul.allow_tf32) if not cpu else None}
    print(f"[gpu_check] matmul peak: bf16 {figures['bf16_tflops']:.1f}, fp32 {figures['fp32_tflops']:.1f} TFLOP/s "
          f"({time.perf_counter() - start:.1f} s)", flush=True)
    return figures


def environment(cpu: bool) -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    return {
        "torch": torch.__version__,
        "lightning": L.__version__,
        "cuda_runtime": torch.version.cuda,
        "device": torch.cuda.get_device_name(0) if cuda and not cpu else "cpu",
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "cpu_threads": torch.get_num_threads(),
        "hydra": f"{hydra.__version__} from {Path(hydra.__file__).parent}",  # run.sh: the carried wheel's
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def precisions(cpu: bool) -> list[str]:
    """The reference precision first: bf16-mixed on a GPU (then 32 and 16-mixed, float16 autocast with GradScaler,
    a GPU setting); 32 on a CPU (then bf16-mixed)."""
    if cpu:
        return ["32", "bf16-mixed"]
    return (["bf16-mixed"] if torch.cuda.is_bf16_supported() else []) + ["32", "16-mixed"]


def training_plan(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The training rows, most telling first (a spent budget skips the last): the reference (first precision, first
    batch size, input feeding on, eager; profiled), the other precisions, the other batch sizes, each compile mode
    with its eager twin at the same padding, and input feeding off."""
    first, *others = precisions(args.cpu)
    batch, *bigger = args.batch_sizes
    row = {"precision": first, "batch_size": batch, "input_feeding": True, "compile": None, "pad_to_multiple": None}
    plan = [{**row, "profile": True}]
    plan += [{**row, "precision": p} for p in others]
    plan += [{**row, "batch_size": b} for b in bigger]
    if args.compile_modes:
        plan.append({**row, "pad_to_multiple": args.pad_to_multiple})
        plan += [{**row, "pad_to_multiple": args.pad_to_multiple, "compile": mode} for mode in args.compile_modes]
    plan.append({**row, "input_feeding": False})
    return plan


def row_name(row: dict[str, Any]) -> str:
    name = f"train_{row['precision']}_b{row['batch_size']}_{'feed' if row['input_feeding'] else 'nofeed'}"
    if row["pad_to_multiple"]:
        name += f"_pad{row['pad_to_multiple']}"
    return name + (f"_compile-{row['compile']}" if row["compile"] else "")


def row_overrides(row: dict[str, Any], cpu: bool) -> list[str]:
    """The Hydra overrides of a training row. On a CPU the compile rows and their eager twin run PyTorch's LSTM:
    the CPU's default training LSTM (stepwise) records its own tape, which ``torch.compile`` cannot trace."""
    overrides = [f"trainer.precision={row['precision']}", f"data.batch_size={row['batch_size']}",
                 f"model.decoder.input_feeding={str(row['input_feeding']).lower()}"]
    if row["pad_to_multiple"]:
        overrides.append(f"data.pad_to_multiple={row['pad_to_multiple']}")
    if row["compile"]:
        overrides.append(f"model.compile={row['compile']}")
    if cpu and row["pad_to_multiple"]:
        overrides += ["model.encoder.lstm_impl=torch", "model.decoder.lstm_impl=torch"]
    return overrides


def compile_verdicts(training: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each compiled row against its eager twin (same precision, batch, padding): tokens/s of both and the speed-up,
    and a verdict in words."""
    verdicts = []
    for row in training:
        if not row["compile"]:
            continue
        eager = next((r for r in training if not r["compile"] and all(
            r[k] == row[k] for k in ("precision", "batch_size", "input_feeding", "pad_to_multiple"))), None)
        fast, slow = row.get("tokens_per_s"), (eager or {}).get("tokens_per_s")
        entry = {"mode": row["compile"], "precision": row["precision"], "batch_size": row["batch_size"],
                 "pad_to_multiple": row["pad_to_multiple"], "tokens_per_s": fast, "eager_tokens_per_s": slow,
                 "speedup": fast / slow if fast and slow else None,
                 "timed_steps_with_a_new_shape": row.get("timed_steps_with_a_new_shape")}
        if entry["speedup"] is None:
            entry["verdict"] = "not measured (a run failed or was skipped)"
        elif entry["speedup"] >= 1.05:
            entry["verdict"] = f"compiling helps: {entry['speedup']:.2f}x the eager tokens/s"
        else:
            entry["verdict"] = (f"compiling does not help this configuration: {entry['speedup']:.2f}x the eager "
                                "tokens/s" + (f" ({entry['timed_steps_with_a_new_shape']} timed steps met a new "
                                              "shape and compiled)" if entry["timed_steps_with_a_new_shape"] else ""))
        verdicts.append(entry)
    return verdicts


def profile_figures(training: list[dict[str, Any]], peak: dict[str, Any]) -> dict[str, Any]:
    """The profiled row's summary, with its busy time set against the unprofiled step time of the same run, and
    every row's fraction of the measured bf16 matmul peak."""
    for row in training:
        if row.get("flops_per_s") and peak.get("bf16_tflops"):
            row["of_bf16_peak"] = row["flops_per_s"] / (peak["bf16_tflops"] * 1e12)
            row["of_fp32_peak"] = row["flops_per_s"] / (peak["fp32_tflops"] * 1e12)  # above 1: a CPU slow in bf16
    profiled = next((r for r in training if r.get("profile")), None)
    if profiled is None:
        return {}
    profile = dict(profiled["profile"])
    profile["row"] = row_name(profiled)
    if profiled.get("s_per_step"):
        profile["unprofiled_wall_ms_per_step"] = profiled["s_per_step"] * 1e3
        profile["busy_fraction_unprofiled"] = profile["busy_ms_per_step"] / (profiled["s_per_step"] * 1e3)
    return profile


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _ok(row: dict[str, Any]) -> str:
    if row.get("skipped"):
        return "skipped"
    return "yes" if row.get("ok") else ("stopped" if row.get("stopped") else "FAILED")


def format_table(figures: dict[str, Any]) -> str:
    from rich.console import Console
    from rich.table import Table

    env, peak = figures["environment"], figures["matmul_peak"]
    title = (f"gpu_check on {env['device']}, {env['date']} (torch {env['torch']}, {figures['steps']} steps per "
             f"training; matmul peak bf16 {peak['bf16_tflops']:.3g} / fp32 {peak['fp32_tflops']:.3g} TFLOP/s)")
    table = Table(title=title)
    for column in ("step", "ok", "train loss", "test BLEU", "tokens/s", "of bf16 peak", "peak MiB", "sentences/s",
                   "seconds"):
        table.add_column(column, justify="left" if column == "step" else "right")
    for row in figures["training"]:
        label = (f"train {row['precision']} b{row['batch_size']} feeding {'on' if row['input_feeding'] else 'off'}"
                 + (f" pad{row['pad_to_multiple']}" if row["pad_to_multiple"] else "")
                 + (f" {row['compile']}" if row["compile"] else ""))
        table.add_row(label, _ok(row), _fmt(row.get("train/loss"), ".3f"), _fmt(row.get("test/bleu"), ".2f"),
                      _fmt(row.get("tokens_per_s"), ",.0f"), _fmt(row.get("of_bf16_peak"), ".2%"),
                      _fmt(row.get("peak_memory_mib"), ",.0f"), "", _fmt(row.get("seconds"), ".1f"))
    for batch, decode in figures["decode"].items():
        for search in ("greedy", "beam5"):
            if search in decode:
                table.add_row(f"decode {search} b{batch} ({decode['sentences']} sentences)", _ok(decode), "",
                              _fmt(decode[search]["bleu"], ".2f"), "", "", "",
                              _fmt(decode[search]["sentences_per_s"], ",.1f"), f"{decode[search]['seconds']:.1f}")
        if "greedy" not in decode:
            table.add_row(f"decode, batch {batch}", _ok(decode), *[""] * 7)
    tests = figures["cuda_tests"]
    if tests:
        counts = ", ".join(f"{tests[k]} {k}" for k in ("passed", "skipped", "failed") if k in tests)
        table.add_row("unit tests -m cuda", _ok(tests), counts, "", "", "", "", "", _fmt(tests.get("seconds"), ".1f"))
    ddp = figures["ddp"]
    if ddp:
        table.add_row(f"ddp 1 device ({ddp.get('backend')})", _ok(ddp), _fmt(ddp.get("train/loss"), ".3f"),
                      _fmt(ddp.get("test/bleu"), ".2f"), "", "", "", "", _fmt(ddp.get("seconds"), ".1f"))
    console = Console(width=160, record=True, file=open(os.devnull, "w"))
    console.print(table)
    lines = [console.export_text()]
    if profile := figures["profile"]:
        lines.append(f"profile of {profile['row']} ({profile['steps']} steps from step {profile['first_step']}): "
                     f"{profile['kernels_per_step']:,.0f} {profile['counted']} per step"
                     + (f", {profile['copies_per_step']:,.0f} copies" if profile["copies_per_step"] else "")
                     + f"; busy {profile['busy_ms_per_step']:.2f} ms of {profile['wall_ms_per_step']:.2f} ms wall per "
                     f"profiled step ({_fmt(profile['busy_fraction'], '.0%')})"
                     + (f", of {profile['unprofiled_wall_ms_per_step']:.2f} ms unprofiled "
                        f"({profile['busy_fraction_unprofiled']:.0%})" if profile.get("unprofiled_wall_ms_per_step") else ""))
        for k in profile["top"]:
            lines.append(f"  {k['share']:6.1%} {k['ms_per_step']:8.3f} ms/step {k['calls_per_step']:7.1f} calls/step  {k['name']}")
    for verdict in figures["compile"]:
        lines.append(f"compile {verdict['mode']} ({verdict['precision']}, batch {verdict['batch_size']}, pad "
                     f"{verdict['pad_to_multiple']}): {verdict['verdict']}")
    return "\n".join(lines) + "\n"


def _list(text: str) -> list[Any]:
    return [int(x) if x.isdigit() else x for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="the same steps on the CPU (gloo for DDP)")
    parser.add_argument("--steps", type=int, default=200, help="steps of each training (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed first steps of each training (default 20)")
    parser.add_argument("--batch-sizes", type=_list, default=[64, 256, 1024],
                        help="sentences per training batch, comma-separated; the first is the reference (default 64,256,1024)")
    parser.add_argument("--compile-modes", type=_list, default=["default", "reduce-overhead"],
                        help="model.compile modes measured against eager, comma-separated ('' for none)")
    parser.add_argument("--pad-to-multiple", type=int, default=16, help="data.pad_to_multiple of the compile rows (default 16)")
    parser.add_argument("--profile-steps", type=int, default=8, help="steps profiled in the reference run's warm-up (0: none)")
    parser.add_argument("--matmul-size", type=int, default=8192, help="side of the peak-measuring matrix product (default 8192)")
    parser.add_argument("--decode-batches", type=_list, default=[64, 512], help="decoding batch sizes (default 64,512)")
    parser.add_argument("--ddp-steps", type=int, default=50, help="steps of the DDP run (default 50; 0: none)")
    parser.add_argument("--decode-limit", type=int, default=0, help="decode only the first N test sentences (0: all)")
    parser.add_argument("--no-tests", action="store_true", help="skip the cuda-marked unit tests")
    parser.add_argument("--budget-s", type=float, default=0, help="stop starting steps after this many seconds, and "
                        "stop a step that would run past them (0: no limit); what did not run is marked skipped")
    parser.add_argument("--out", default=None, help="folder of the runs and gpu_check.json (default logs/gpu_check/<time>)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run (after --)")
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        print("gpu_check: torch sees no CUDA device. Fix: install a CUDA build (make install TORCH_SPEC=\"torch==2.13.0 "
              "--index-url <CUDA wheel index>\") on a machine with an NVIDIA GPU, or pass --cpu", file=sys.stderr)
        return 2
    budget = Budget(args.budget_s)
    out = Path(args.out or REPO / "logs" / "gpu_check" / time.strftime("%Y%m%d-%H%M%S")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    device = ["trainer.accelerator=cpu"] if args.cpu else ["trainer.accelerator=gpu"]
    overrides = [*device, *args.overrides]

    figures: dict[str, Any] = {"environment": environment(args.cpu), "steps": args.steps, "warmup": args.warmup,
                               "budget_s": args.budget_s, "overrides": overrides}
    figures["matmul_peak"] = matmul_peak(args.cpu, args.matmul_size)
    figures["training"], figures["decode"] = [], {}

    def save() -> None:  # after every step: what ran is kept if the machine stops the check
        (out / "gpu_check.json").write_text(json.dumps(figures, indent=2) + "\n")

    save()
    for i, row in enumerate(training_plan(args)):
        name = row_name(row)
        if not budget.fits(30):
            result = dict(SKIPPED)
        else:
            result = train_run(name, [*row_overrides(row, args.cpu), *overrides], args.steps, out, budget, args.warmup,
                               args.profile_steps if row.pop("profile", False) else 0)
        row.pop("profile", None)
        figures["training"].append({**row, **result})
        save()
        if i == 0:  # decoding right after the reference run, whose checkpoint it reads: before the budget runs out
            ckpt = result.get("best_model_path") if result["ok"] else None
            for batch in args.decode_batches:
                if not ckpt:
                    figures["decode"][batch] = {"ok": False, "reason": "no checkpoint: the reference training did not run"}
                elif not budget.fits(20):
                    figures["decode"][batch] = dict(SKIPPED)
                else:
                    figures["decode"][batch] = decode_run(ckpt, overrides, args.decode_limit, batch, budget)
                save()
    figures["profile"] = profile_figures(figures["training"], figures["matmul_peak"])
    figures["compile"] = compile_verdicts(figures["training"])
    figures["cuda_tests"] = {} if args.no_tests else (cuda_tests(out, budget) if budget.fits(30) else dict(SKIPPED))
    save()
    figures["ddp"] = {}
    if args.ddp_steps:
        ddp_overrides = ["trainer=ddp", "trainer.devices=1", *overrides]
        backend = {"backend": "gloo" if args.cpu else "nccl"}
        figures["ddp"] = {**backend, **(train_run("ddp", ddp_overrides, args.ddp_steps, out, budget, args.warmup)
                                        if budget.fits(30) else SKIPPED)}

    table = format_table(figures)
    print(table, flush=True)
    save()
    (out / "gpu_check.txt").write_text(table)
    print(f"[gpu_check] figures: {out / 'gpu_check.json'}", flush=True)
    steps = [figures["cuda_tests"] or {"ok": True}, *figures["training"], *figures["decode"].values(), figures["ddp"] or {"ok": True}]
    return 0 if all(step.get("ok") and not step.get("stopped") for step in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
