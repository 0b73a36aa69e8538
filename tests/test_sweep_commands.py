"""Every sweep (``-m``) command written in README.md and docs/*.md works as written.

Hydra resolves ``hydra.sweep.dir`` in the multirun's driver, where ``${hydra:runtime.cwd}`` is not set; the tests of
sweeps used to pass ``paths.log_dir`` and hid that every documented ``-m`` command failed. Here:

- the commands of ``RUN_FULLY`` (short by design) run exactly as written, in a fresh temporary folder;
- every other one (20 Optuna trials of 5,000 steps, an 11-attention comparison on Multi30k, SLURM jobs, a Ray
  cluster) cannot finish, or cannot run at all, on CI's 2 cores without a GPU or cluster: it is composed exactly as
  the driver composes it (same overrides, same config, in a fresh folder, no ``HydraConfig`` set) and its sweep
  folder, sweeper and launcher are resolved and instantiated: what failed before.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
DATA_DIR = Path(os.environ.get("SEQ2SEQ_DATA_DIR", REPO.parent / "shared" / "data"))

RUN_FULLY = {
    "s2s-train -m hydra/launcher=ray debug=fast_dev_run 'model/attention=general,additive,dot,concat'",
}
"""Documented sweeps short enough for CI: run as written (the test only sets SEQ2SEQ_DATA_DIR and a cache folder)."""


def documented_sweeps() -> list[tuple[str, str]]:
    """``(file:line, command)`` of every multirun (``-m`` after the program) of ``seq2seq_lit.train``/``s2s-train``
    in a code block of README.md or docs/*.md, continuation lines joined, comments left out."""
    found = []
    for path in DOCS:
        lines = path.read_text().splitlines()
        in_block, i = False, 0
        while i < len(lines):
            line, start = lines[i], i
            i += 1
            if line.lstrip().startswith("```"):
                in_block = not in_block
                continue
            if not in_block or not re.search(r"(seq2seq_lit\.train|s2s-train)\b", line):
                continue
            while line.rstrip().endswith("\\") and i < len(lines):
                line = line.rstrip()[:-1] + " " + lines[i].strip()
                i += 1
            try:
                words = shlex.split(line, comments=True)
            except ValueError:  # not a shell line
                continue
            program = next((k for k, w in enumerate(words) if w == "seq2seq_lit.train" or w.endswith("s2s-train")), None)
            if program is not None and {"-m", "--multirun"} & set(words[program + 1 :]):
                found.append((f"{path.relative_to(REPO)}:{start + 1}", " ".join(shlex.quote(w) for w in words)))
    return found


def _requote(command: str) -> str:
    return " ".join(shlex.quote(w) for w in shlex.split(command))


def overrides_of(command: str) -> tuple[dict[str, str], list[str]]:
    """``(environment assignments before the program, Hydra overrides)`` of a documented sweep command."""
    words = shlex.split(command)
    env = {}
    while re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    rest = words[words.index("seq2seq_lit.train") + 1 :] if "seq2seq_lit.train" in words else words[1:]
    return env, [w for w in rest if w not in ("-m", "--multirun")]


SWEEPS = documented_sweeps()


def test_the_docs_have_sweep_commands_and_the_fast_ones_are_among_them():
    commands = {c for _, c in SWEEPS}
    assert len(SWEEPS) >= 5, SWEEPS
    missing = {_requote(c) for c in RUN_FULLY} - commands
    assert not missing, f"RUN_FULLY names commands no longer in the docs: {missing}"


@pytest.mark.parametrize("where,command", [s for s in SWEEPS if s[1] not in {_requote(c) for c in RUN_FULLY}], ids=[s[0] for s in SWEEPS if s[1] not in {_requote(c) for c in RUN_FULLY}])
def test_documented_long_sweep_composes_in_the_driver(where, command, tmp_path, monkeypatch):
    """Too long (or needing a cluster) for CI: composed and resolved as the multirun's driver does, in a fresh folder."""
    from hydra.core.plugins import Plugins
    from hydra.types import HydraContext, RunMode

    import seq2seq_lit.utils.entry  # noqa: F401  (registers the resolvers, as the entry point does)

    env, overrides = overrides_of(command)
    monkeypatch.chdir(tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    GlobalHydra.instance().clear()
    HydraConfig.instance().cfg = None  # the driver has none: a job sets it
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        cfg = loader.load_configuration("train.yaml", overrides, run_mode=RunMode.MULTIRUN)
    sweep_dir = Path(str(cfg.hydra.sweep.dir))  # what failed: ${hydra:runtime.cwd} without a HydraConfig
    assert sweep_dir.is_absolute() == (not str(sweep_dir).startswith("logs/")), f"{where}: {sweep_dir}"
    if not any(o.startswith("hydra.sweep.dir=") for o in overrides):
        assert sweep_dir.is_relative_to(tmp_path), f"{where}: the sweep folder {sweep_dir} is not under the folder the command ran in"
    OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)
    OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    context = HydraContext(config_loader=loader, callbacks=None)  # setting up calls none
    Plugins.instance().instantiate_sweeper(config=cfg, hydra_context=context, task_function=lambda c: None)
    launcher = Plugins.instance().instantiate_launcher(config=cfg, hydra_context=context, task_function=lambda c: None)
    assert type(launcher).__name__ == {"ray": "RayTrialLauncher", "slurm": "SlurmLauncher"}.get(
        cfg.hydra.runtime.choices["hydra/launcher"], "BasicLauncher"
    )


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(RUN_FULLY))
def test_documented_short_sweep_runs_as_written(command, tmp_path):
    if not (DATA_DIR / "multi30k" / "train.en").is_file():
        pytest.skip(f"needs Multi30k under {DATA_DIR}/multi30k (SEQ2SEQ_DATA_DIR)")
    env = {**os.environ, "SEQ2SEQ_DATA_DIR": str(DATA_DIR), "SEQ2SEQ_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = sorted(tmp_path.glob("logs/train/multiruns/*/*/metrics.json"))
    assert len(metrics) == 4, result.stderr[-3000:]
    assert "4 finished, 0 failed, 0 stopped" in result.stderr
