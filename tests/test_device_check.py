"""The GPU check prepared here and run on the lent GPU machine as it is (bench/device/): ``run.sh`` end to end on the
CPU with this machine's Python and a tiny model (wheels installed with ``--target``, the checkout on PYTHONPATH, the
figures and logs in at most 8 files, none in a subfolder), and the lists that decide what travels as wheels."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

from .conftest import REPO, TINY, reverse_data_overrides

DEVICE = REPO / "bench" / "device"
# What the lent GPU machine has (the device README's KINDS.md): the versions the project's floors must allow.
MACHINE_VERSIONS = {"torch": "2.11.0", "lightning": "2.6.6", "torchmetrics": "1.9.0", "sentencepiece": "0.2.2"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(path: Path) -> tuple[set[str], set[str]]:
    """(listed names, names of '# not carried: NAME' lines) of a list file."""
    listed, not_carried = set(), set()
    for line in path.read_text().splitlines():
        if match := re.match(r"#\s*not carried:\s*([\w.-]+)", line):
            not_carried.add(_norm(match[1]))
        elif not line.startswith("#"):
            listed |= {_norm(n) for n in line.split()}
    return listed, not_carried


def _dependencies() -> list[Requirement]:
    return [Requirement(d) for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]]


def test_every_dependency_is_on_the_gpu_machine_carried_or_said_not_needed():
    machine, _ = _names(DEVICE / "machine_packages.txt")
    carried, not_carried = _names(DEVICE / "wheels.txt")
    for requirement in _dependencies():
        name = _norm(requirement.name)
        assert name in machine | carried | not_carried, (
            f"{name} (pyproject.toml) is neither on the GPU machine (bench/device/machine_packages.txt) nor carried: "
            "add it to bench/device/wheels.txt, or as '# not carried: NAME (why)' if gpu_check never imports it"
        )
        assert not (name in carried and name in machine), f"{name} is on the machine already: carry it only for another version"
    assert {"hydra-core", "omegaconf", "antlr4-python3-runtime"} <= carried


def test_the_version_floors_allow_the_gpu_machines_packages():
    requirements = {_norm(r.name): r for r in _dependencies()}
    for name, version in MACHINE_VERSIONS.items():
        assert requirements[name].specifier.contains(Version(version)), (
            f"pyproject.toml requires {requirements[name]}, the GPU machine has {name} {version}"
        )


def _probe_wheel(folder: Path) -> Path:
    """A tiny pure-Python wheel (package ``s2s_probe``), so that the install step runs without the network."""
    folder.mkdir(parents=True)
    wheel = folder / "s2s_probe-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("s2s_probe/__init__.py", "VALUE = 1\n")
        z.writestr("s2s_probe-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: s2s-probe\nVersion: 1.0\n")
        z.writestr("s2s_probe-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("s2s_probe-1.0.dist-info/RECORD", "")
    return wheel


def _run_sh(out: Path, wheels: Path, *args: str, timeout: float = 1500) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "WHEELS": str(wheels), "OMP_NUM_THREADS": "1", "TMPDIR": str(out.parent),
           "BUDGET_S": "0"}  # no time budget: this shared CPU is far slower than the GPU machine the default is for
    for name in ("SEQ2SEQ_DATA_DIR", "OUT", "PYTHONPATH"):
        env.pop(name, None)
    return subprocess.run(["bash", "bench/device/run.sh", str(out), *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_run_sh_without_wheels_says_to_run_prepare(tmp_path):
    (tmp_path / "none").mkdir()
    result = _run_sh(tmp_path / "out", tmp_path / "none", "--", "--cpu")
    assert result.returncode == 2
    assert "no wheels in" in result.stdout and "Fix: run bash bench/device/prepare.sh" in result.stdout  # run.sh tees both
    assert (tmp_path / "out" / "run.log").read_text().count("[run.sh] machine") == 1


@pytest.mark.slow
def test_run_sh_runs_every_step_on_the_cpu_and_hands_back_few_files(reverse_corpus, tmp_path):
    overrides = [*TINY, *reverse_data_overrides(reverse_corpus), "data.eval_batch_size=50"]
    check = ["--cpu", "--steps", "12", "--warmup", "6", "--profile-steps", "3", "--batch-sizes", "16,32",
             "--compile-modes", "default", "--pad-to-multiple", "16", "--decode-batches", "8,32", "--decode-limit",
             "40", "--matmul-size", "256", "--ddp-steps", "4", "--no-tests"]
    out = tmp_path / "out"
    wheels = _probe_wheel(tmp_path / "wheels").parent
    prepared = sorted((REPO / ".whl").glob("*.whl"))  # after bench/device/prepare.sh: the wheels that travel
    for wheel in prepared:
        (wheels / wheel.name).write_bytes(wheel.read_bytes())
    result = _run_sh(out, wheels, "--", *check, "--", *overrides)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]

    # the call's output: few files, no subfolder; each step timed
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.json", "gpu_check.txt", "logs.tar.gz", "run.log"]
    log = (out / "run.log").read_text()
    for step in ("machine", "wheels", "import check", "gpu_check", "output"):
        assert re.search(rf"\[run.sh\] {step} +\d+\.\d s", log), step
    assert re.search(r"installed: .*s2s_probe-1.0", log)
    if prepared:  # hydra comes from the carried wheel, as on the GPU machine
        assert "hydra_core-" in log
        assert str(tmp_path) in json.loads((out / "gpu_check.json").read_text())["environment"]["hydra"]
    with tarfile.open(out / "logs.tar.gz") as tar:
        names = tar.getnames()
    assert "./train_32_b16_feed/run.log" in names and not any(n.endswith(".ckpt") for n in names)

    figures = json.loads((out / "gpu_check.json").read_text())
    assert figures["matmul_peak"]["bf16_tflops"] > 0 and figures["matmul_peak"]["fp32_tflops"] > 0
    rows = {(r["precision"], r["batch_size"], r["input_feeding"], r["pad_to_multiple"], r["compile"]): r
            for r in figures["training"]}
    assert list(rows) == [("32", 16, True, None, None), ("bf16-mixed", 16, True, None, None), ("32", 32, True, None, None),
                          ("32", 16, True, 16, None), ("32", 16, True, 16, "default"), ("32", 16, False, None, None)]
    for row in rows.values():  # per precision and batch size: tokens/s, peak memory, loss, test BLEU
        assert row["ok"] and row["global_step"] == 12 and row["timed_steps"] == 6, row
        assert row["tokens_per_s"] > 0 and row["peak_memory_mib"] > 0 and 0 < row["train/loss"] < 10
        assert 0 <= row["test/bleu"] <= 100 and 0 < row["of_bf16_peak"]
    profile = figures["profile"]  # on the CPU: operators counted instead of kernels
    assert profile["row"] == "train_32_b16_feed" and profile["steps"] == 3 and "operators on the CPU" in profile["counted"]
    assert profile["kernels_per_step"] > 10 and 0 < profile["busy_fraction"] <= 1.0001 and profile["top"]
    assert 0 < profile["busy_fraction_unprofiled"]
    (verdict,) = figures["compile"]
    assert verdict["mode"] == "default" and verdict["speedup"] > 0 and "compil" in verdict["verdict"]
    for batch in ("8", "32"):
        decode = figures["decode"][batch]
        assert decode["ok"] and decode["sentences"] == 40 and decode["batch"] == int(batch)
        assert decode["greedy"]["sentences_per_s"] > 0 and decode["beam5"]["sentences_per_s"] > 0
    assert figures["ddp"]["ok"] and figures["ddp"]["backend"] == "gloo" and figures["ddp"]["global_step"] == 4
    table = (out / "gpu_check.txt").read_text()
    for line in ("train 32 b16 feeding on", "train 32 b16 feeding on pad16 default", "decode beam5 b32 (40 sentences)",
                 "profile of train_32_b16_feed", "compile default (32, batch 16, pad 16):"):
        assert line in table, line
