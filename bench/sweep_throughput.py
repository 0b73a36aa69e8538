"""Sweep throughput with ``hydra/launcher=ray``, and the GPUs Ray gives to concurrent trials.

    .venv/bin/python bench/sweep_throughput.py [--trials 4] [--steps 300] [--json PATH]

A benchmark that prints figures, not a test: nothing here passes or fails on speed.

1. **CPU workers**: the same ``--trials`` short trials (the reverse-the-sequence task of ``tests/conftest.py``, a
   tiny model, ``--steps`` steps each, one thread per trial: ``OMP_NUM_THREADS=1`` and ``num_cpus: 1`` per Ray task)
   run as ``s2s-train -m hydra/launcher=ray`` with a local Ray of 1, then 2 CPUs (``hydra.launcher.ray.init.num_cpus``),
   so 1, then 2 trials at a time. Wall time of the whole command (Ray's start included) and of the trials alone (the
   first trial's first log line to the last one's last), and the ratios 1 worker / 2 workers.
2. **Declared GPUs**: ``ray.init(num_gpus=2)`` on a machine without GPUs (Ray schedules what it is told exists); 3
   Ray tasks with the resources the launcher asks for a ``trainer=gpu`` trial (``RayTrials._resources`` on the
   composed config: ``num_gpus=trainer.devices=1``) each print the ``CUDA_VISIBLE_DEVICES`` Ray gave it and hold it
   for ``--hold`` seconds: two run at once on distinct devices, the third waits for the first that frees.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.conftest import TINY, reverse_data_overrides, write_reverse_corpus  # noqa: E402  (the tests' task)


def cpu_sweep(workers: int, trials: int, steps: int, corpus: dict, folder: Path) -> dict:
    """Run ``trials`` trials with ``workers`` CPUs for Ray; wall seconds of the command and of the trials."""
    command = [
        sys.executable, "-m", "seq2seq_lit.train", "-m", "hydra/launcher=ray", f"hydra.launcher.ray.init.num_cpus={workers}",
        *TINY, *reverse_data_overrides(corpus), "logger=csv", f"trainer.max_steps={steps}", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1", "callbacks.attention_heatmaps=null", f"paths.cache_dir={folder}/cache",
        f"hydra.sweep.dir={folder}/w{workers}", f"seed={','.join(str(s) for s in range(1, trials + 1))}",
    ]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=folder, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"the sweep with {workers} workers failed:\n{result.stderr[-3000:]}")
    spans = [_log_span(folder / f"w{workers}" / str(i) / "train.log") for i in range(trials)]
    trials_s = (max(e for _, e in spans) - min(s for s, _ in spans)).total_seconds()
    return {"workers": workers, "wall_s": round(wall, 1), "trials_s": round(trials_s, 1)}


def _log_span(log: Path) -> tuple[datetime, datetime]:
    stamps = re.findall(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]", log.read_text(), re.M)
    return tuple(datetime.strptime(s, "%Y-%m-%d %H:%M:%S,%f") for s in (stamps[0], stamps[-1]))  # type: ignore[return-value]


def declared_gpus(hold: float) -> list[dict]:
    """Three trials' requests on a Ray with 2 declared GPUs: which device each got, and when it ran."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")  # every trial's line, as the launcher shows them (read on import)
    import ray
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from seq2seq_lit.sweep.ray_launcher import RayTrials

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train.yaml", overrides=["trainer=gpu", "hydra/launcher=ray"], return_hydra_config=True)
    launcher = RayTrials(cfg.hydra.launcher.ray)
    options = {**OmegaConf.to_container(cfg.hydra.launcher.ray.remote), **launcher._resources(cfg)}

    def trial(n: int) -> dict:
        start = time.time()
        devices = os.environ.get("CUDA_VISIBLE_DEVICES")
        print(f"trial {n}: CUDA_VISIBLE_DEVICES={devices}", flush=True)
        time.sleep(hold)
        return {"trial": n, "CUDA_VISIBLE_DEVICES": devices, "start": start, "end": time.time()}

    ray.init(num_cpus=4, num_gpus=2, include_dashboard=False)
    try:
        rows = ray.get([ray.remote(trial).options(**options).remote(n) for n in range(3)])
    finally:
        ray.shutdown()
    t0 = min(r["start"] for r in rows)
    for r in rows:
        r["start"], r["end"] = round(r["start"] - t0, 1), round(r["end"] - t0, 1)
    return [{**r, "request": options} for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--hold", type=float, default=5.0, help="seconds each declared-GPU trial holds its device")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    figures: dict = {"trials": args.trials, "steps": args.steps, "nproc": os.cpu_count(),
                     "load_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        corpus = write_reverse_corpus(folder, {"train": 3000, "val": 100, "test": 100})
        runs = [cpu_sweep(w, args.trials, args.steps, corpus, folder) for w in (1, 2)]
    figures["cpu"] = runs
    figures["ratio_wall"] = round(runs[0]["wall_s"] / runs[1]["wall_s"], 2)
    figures["ratio_trials"] = round(runs[0]["trials_s"] / runs[1]["trials_s"], 2)
    figures["gpus"] = declared_gpus(args.hold)
    figures["load_after"] = os.getloadavg()[0]
    print(f"{args.trials} trials of {args.steps} steps, 1 thread each ({os.cpu_count()} cores, load {figures['load_before']:.1f})")
    for r in runs:
        print(f"  {r['workers']} Ray worker(s): {r['wall_s']:.1f} s wall (Ray start included), trials {r['trials_s']:.1f} s")
    print(f"  ratio 1 / 2 workers: wall {figures['ratio_wall']}, trials {figures['ratio_trials']}")
    print("Ray with 2 declared GPUs, 3 trials asking num_gpus=1:")
    for r in figures["gpus"]:
        print(f"  trial {r['trial']}: CUDA_VISIBLE_DEVICES={r['CUDA_VISIBLE_DEVICES']}, ran {r['start']}-{r['end']} s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
