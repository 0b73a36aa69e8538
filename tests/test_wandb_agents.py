"""sweeps/agents.sh starts one ``wandb agent`` per GPU, each with only its GPU visible; tested with a stand-in
``wandb`` on PATH that records its arguments and environment (a real agent needs a W&B account)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "sweeps" / "agents.sh"

STAND_IN = """#!/usr/bin/env python3
import json, os, sys, time
out = os.path.join(os.environ["RECORD_DIR"], f"agent-{os.getpid()}.json")
with open(out, "w") as f:
    json.dump({"argv": sys.argv[1:], "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}, f)
time.sleep(float(os.environ.get("AGENT_SECONDS", "0")))
sys.exit(int(os.environ.get("AGENT_STATUS", "0")))
"""


def run_script(tmp_path: Path, *args: str, gpus: str | None, **env: str) -> subprocess.CompletedProcess:
    bin_dir, records = tmp_path / "bin", tmp_path / "records"
    bin_dir.mkdir(exist_ok=True)
    records.mkdir(exist_ok=True)
    (bin_dir / "wandb").write_text(STAND_IN)
    (bin_dir / "wandb").chmod(0o755)
    full_env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "RECORD_DIR": str(records), **env}
    full_env.pop("GPUS", None)
    if gpus is not None:
        full_env["GPUS"] = gpus
    return subprocess.run([str(SCRIPT), *args], cwd=tmp_path, env=full_env, capture_output=True, text=True, timeout=60)


def recorded(tmp_path: Path) -> list[dict]:
    return sorted((json.loads(p.read_text()) for p in (tmp_path / "records").glob("*.json")), key=lambda r: r["cuda"])


def test_one_agent_per_gpu_each_sees_only_its_gpu(tmp_path):
    result = run_script(tmp_path, "me/seq2seq-lit/abc123", "--count", "5", gpus="0 1 3")
    assert result.returncode == 0, result.stderr
    agents = recorded(tmp_path)
    assert [a["cuda"] for a in agents] == ["0", "1", "3"]
    assert all(a["argv"] == ["agent", "--count", "5", "me/seq2seq-lit/abc123"] for a in agents)
    assert sorted(p.name for p in (tmp_path / "logs" / "agents" / "abc123").iterdir()) == ["gpu0.log", "gpu1.log", "gpu3.log"]


def test_an_agent_that_fails_makes_the_script_fail(tmp_path):
    result = run_script(tmp_path, "me/seq2seq-lit/abc123", gpus="0 1", AGENT_STATUS="3")
    assert result.returncode == 3
    assert len(recorded(tmp_path)) == 2


def test_no_sweep_id_or_no_gpus_is_a_clear_error(tmp_path):
    result = run_script(tmp_path, gpus="0")
    assert result.returncode == 2 and "usage:" in result.stderr
    result = run_script(tmp_path, "me/p/s", gpus=" ")
    assert result.returncode == 2 and "no GPUs found" in result.stderr


def test_sigterm_stops_every_agent(tmp_path):
    bin_dir, records = tmp_path / "bin", tmp_path / "records"
    run_script(tmp_path, "me/p/warmup", gpus="0")  # writes the stand-in
    for p in records.glob("*.json"):
        p.unlink()
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "RECORD_DIR": str(records), "GPUS": "0 1",
           "AGENT_SECONDS": "60"}
    proc = subprocess.Popen([str(SCRIPT), "me/p/s"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while len(list(records.glob("*.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) != 0
    assert time.monotonic() - start < 20  # the agents were stopped, not waited for (60 s)
