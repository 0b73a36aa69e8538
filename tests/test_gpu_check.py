"""``bench/gpu_check.sh --cpu`` end to end with a tiny model on the reverse task: every step runs, the table and the
JSON have every figure (none is compared with a speed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .conftest import REPO, TINY, reverse_data_overrides


@pytest.mark.slow
def test_gpu_check_runs_every_step_on_the_cpu_and_prints_the_table(reverse_corpus, tmp_path):
    overrides = [*TINY, *reverse_data_overrides(reverse_corpus), "data.eval_batch_size=50",
                 f"paths.cache_dir={tmp_path}/cache", f"paths.log_dir={tmp_path}/logs"]
    out = tmp_path / "out"
    command = ["bash", "bench/gpu_check.sh", "--cpu", "--steps", "16", "--warmup", "8", "--batch-sizes", "32",
               "--compile-modes", "", "--decode-batches", "50", "--matmul-size", "256", "--ddp-steps", "4",
               "--out", str(out), "--", *overrides]
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    env.pop("SEQ2SEQ_DATA_DIR", None)  # not needed with data=... overrides
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    for row in ("unit tests -m cuda", "train 32 b32 feeding on", "train bf16-mixed b32 feeding on",
                "train 32 b32 feeding off", "decode greedy b50 (100 sentences)", "decode beam5 b50 (100 sentences)",
                "ddp 1 device (gloo)", "profile of train_32_b32_feed"):
        assert row in result.stdout, row
    figures = json.loads((out / "gpu_check.json").read_text())
    assert figures["cuda_tests"]["ok"] and figures["cuda_tests"]["skipped"] >= 1  # no CUDA here: skipped, not failed
    assert [(r["precision"], r["input_feeding"]) for r in figures["training"]] == [
        ("32", True), ("bf16-mixed", True), ("32", False)
    ]
    for row in figures["training"]:
        assert row["ok"] and row["global_step"] == 16 and row["timed_steps"] == 8
        assert row["tokens_per_s"] > 0 and row["peak_memory_mib"] > 0 and row["peak_memory_kind"] == "process RSS"
        assert 0 < row["train/loss"] < 10 and 0 <= row["test/bleu"] <= 100
    decode = figures["decode"]["50"]
    assert decode["ok"] and decode["sentences"] == 100 and decode["trained"] and decode["batch"] == 50
    assert decode["greedy"]["sentences_per_s"] > 0 and decode["beam5"]["sentences_per_s"] > 0
    assert figures["compile"] == [] and figures["profile"]["steps"] == 7  # within the 8 warm-up steps
    assert figures["ddp"]["ok"] and figures["ddp"]["backend"] == "gloo" and figures["ddp"]["global_step"] == 4


@pytest.mark.slow
def test_gpu_check_without_cuda_says_how_to_get_it(tmp_path):
    result = subprocess.run([sys.executable, "bench/gpu_check.py", "--out", str(tmp_path)], cwd=REPO,
                            capture_output=True, text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 2
    assert "torch sees no CUDA device. Fix: install a CUDA build" in result.stderr and "or pass --cpu" in result.stderr
