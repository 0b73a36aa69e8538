"""``hydra/launcher=ray`` end to end on the reverse task, with a local Ray of 2 CPUs: trials run two at a time, a
trial given a bad value fails alone and is listed, Ctrl+C leaves the running trials resumable, and the same command
then finishes the sweep without redoing finished trials. Ray takes about 20 s to start on 2 loaded cores: few tests."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from .conftest import TINY, reverse_data_overrides

REPO = Path(__file__).resolve().parents[1]


def sweep_command(corpus, tmp_path: Path, *sweep: str) -> list[str]:
    return [
        sys.executable, "-m", "seq2seq_lit.train", "-m", "hydra/launcher=ray", "hydra.launcher.ray.init.num_cpus=2",
        *TINY, *reverse_data_overrides(corpus), "logger=csv", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
        "callbacks.attention_heatmaps=null", "callbacks.resume_checkpoint.every_n_train_steps=0",
        f"paths.cache_dir={tmp_path}/cache", "hydra.sweep.dir=sweep", *sweep,
    ]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def training_interval(trial: Path) -> tuple[datetime, datetime]:
    """When the trial's fit started and ended, from its train.log (the first and last stamped lines)."""
    stamps = re.findall(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]", (trial / "train.log").read_text(), re.M)
    first, last = (datetime.strptime(s, "%Y-%m-%d %H:%M:%S,%f") for s in (stamps[0], stamps[-1]))
    return first, last


@pytest.mark.slow
def test_four_attentions_two_at_a_time(reverse_corpus, tmp_path):
    command = sweep_command(reverse_corpus, tmp_path, "trainer.max_steps=30", "model/attention=general,additive,dot,concat")
    result = subprocess.run(command, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    sweep = tmp_path / "sweep"
    assert sorted(p.parent.name for p in sweep.glob("*/metrics.json")) == ["0", "1", "2", "3"]
    assert "4 trials in" in result.stderr and "4 finished, 0 failed, 0 stopped" in result.stderr
    intervals = [training_interval(sweep / str(i)) for i in range(4)]
    overlapping = sum(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(intervals) for b in intervals[i + 1 :])
    assert overlapping >= 2, intervals  # with 2 CPUs for 1-CPU trials, two run at once
    at_once = max(sum(s <= t[0] < e for s, e in intervals) for t in intervals)
    assert at_once <= 2, intervals  # and never three


@pytest.mark.slow
def test_a_failed_trial_fails_alone_and_ctrl_c_then_the_same_command_finishes(reverse_corpus, tmp_path):
    # trial 1's max_steps=-7 is refused by Lightning; trials 2 and 3 are long enough to be stopped while training
    command = sweep_command(reverse_corpus, tmp_path, "trainer.max_steps=5,-7,600,601")
    sweep = tmp_path / "sweep"
    # start_new_session: the driver and the Ray processes it starts form one process group, as under a terminal
    proc = subprocess.Popen(command, cwd=tmp_path, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 600
    training = lambda i: any((sweep / str(i) / "checkpoints").glob("step*.ckpt"))  # noqa: E731  (an epoch done)
    while not (training(2) and training(3)) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()[-4000:]
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl+C
    _, stderr = proc.communicate(timeout=400)
    assert proc.returncode == 130, stderr[-4000:]
    assert json.loads((sweep / "1" / "trial.json").read_text())["status"] == "failed"
    for i in (2, 3):
        assert (sweep / str(i) / "checkpoints" / "last.ckpt").is_file(), stderr[-4000:]
        assert json.loads((sweep / str(i) / "trial.json").read_text())["status"] == "stopped"
    finished_at = (sweep / "0" / "metrics.json").stat().st_mtime_ns

    result = subprocess.run(command, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 1, result.stderr[-4000:]  # trial 1 failed again
    assert "4 trials in" in result.stderr and "3 finished, 1 failed, 0 stopped" in result.stderr
    assert re.search(r"^1\s+failed\s+trainer\.max_steps=-7: \S+", result.stderr, re.M), result.stderr[-3000:]
    assert (sweep / "0" / "metrics.json").stat().st_mtime_ns == finished_at  # not run again
    for i, steps in ((2, 600), (3, 601)):
        assert json.loads((sweep / str(i) / "metrics.json").read_text())["global_step"] == steps
        resumed = OmegaConf.load(sweep / str(i) / ".hydra" / "attempt-2" / "overrides.yaml")
        assert "ckpt_path=last" in list(resumed)



@pytest.mark.slow
def test_with_two_declared_gpus_two_trials_hold_distinct_devices_and_the_third_waits():
    """bench/sweep_throughput.py's second part: Ray told of 2 GPUs, 3 tasks with the launcher's request for a
    ``trainer=gpu`` trial (num_gpus=1)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_sweep_throughput", REPO / "bench" / "sweep_throughput.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = sorted(bench.declared_gpus(hold=4.0), key=lambda r: r["start"])
    assert all(r["request"]["num_gpus"] == 1 for r in rows)
    first, second, third = rows
    assert {first["CUDA_VISIBLE_DEVICES"], second["CUDA_VISIBLE_DEVICES"]} == {"0", "1"}
    assert second["start"] < first["end"]  # at once
    assert third["start"] >= min(first["end"], second["end"]) - 0.5  # waited for a device to free
    assert third["CUDA_VISIBLE_DEVICES"] in ("0", "1")
