"""Shared fixtures: Hydra-composed configs over a synthetic reverse-the-sequence task, and one small trained run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from seq2seq_lit.utils.entry import CONFIG_MODULE

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"
SYMBOLS = "abcdefghij"

# A model small enough to train in seconds on 2 CPU cores.
TINY = [
    "model.embedding_size=32",
    "model.encoder.hidden_size=32",
    "model.decoder.hidden_size=64",
    "model.dropout=0.0",
    "model.label_smoothing=0.0",
    "model.optimizer.lr=0.005",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.log_every_n_steps=10",
    "callbacks.progress_bar=null",
]


def pytest_configure(config: pytest.Config) -> None:
    # Ctrl+C at a terminal reaches a foreground job whose SIGINT is at its default. A job that a shell script starts in
    # the background (`pytest &`) inherits SIGINT ignored, and so would every command a test starts: the tests that
    # press Ctrl+C (SIGINT to s2s-prepare, s2s-translate, a Ray sweep) would see nothing happen. They model a terminal.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def reverse_pairs(n: int, rng: random.Random) -> list[tuple[str, str]]:
    """Source: 3-8 random symbols; target: the same symbols reversed."""
    pairs = []
    for _ in range(n):
        tokens = [rng.choice(SYMBOLS) for _ in range(rng.randint(3, 8))]
        pairs.append((" ".join(tokens), " ".join(reversed(tokens))))
    return pairs


def write_pairs(folder: Path, name: str, pairs: list[tuple[str, str]]) -> tuple[Path, Path]:
    src, tgt = folder / f"{name}.src", folder / f"{name}.tgt"
    src.write_text("".join(s + "\n" for s, _ in pairs))
    tgt.write_text("".join(t + "\n" for _, t in pairs))
    return src, tgt


def write_reverse_corpus(folder: Path, sizes: dict[str, int], seed: int = 0) -> dict[str, Path]:
    """Reverse-task files ``{split}.src`` / ``{split}.tgt`` with ``sizes[split]`` pairs; returns the paths by data
    config key (``train_src``, ``train_tgt``, ...)."""
    rng = random.Random(seed)
    paths = {}
    for split, n in sizes.items():
        paths[f"{split}_src"], paths[f"{split}_tgt"] = write_pairs(folder, split, reverse_pairs(n, rng))
    return paths


@pytest.fixture(scope="session")
def reverse_corpus(tmp_path_factory) -> dict[str, Path]:
    return write_reverse_corpus(tmp_path_factory.mktemp("reverse"), {"train": 3000, "val": 100, "test": 100})


def run_module(module: str, *args: str, stdin: str | bytes | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m module args`` from the repository root, one thread, W&B offline; stdout and stderr as text."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    data = stdin.encode() if isinstance(stdin, str) else stdin
    result = subprocess.run([sys.executable, "-m", module, *args], input=data, capture_output=True, cwd=REPO, env=env, timeout=timeout)
    result.stdout, result.stderr = result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
    return result


def reverse_data_overrides(corpus: dict[str, Path]) -> list[str]:
    return ["data=parallel_text", "data.tokenizer.vocab_size=24", "data.batch_size=32"] + [
        f"data.{key}={path}" for key, path in corpus.items()
    ]


def compose_train(overrides: list[str], output_dir: Path, config_name: str = "train.yaml") -> DictConfig:
    """Compose ``conf/train.yaml`` as ``python -m seq2seq_lit.train`` would, writing everything under ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
        HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra  # the task function of a real run does not see this node either
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir / "logs")
        cfg.paths.cache_dir = str(output_dir.parent / "cache")
    return cfg


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` are skipped where torch sees no CUDA device."""
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in items:
            if item.get_closest_marker("cuda"):
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _offline_wandb(monkeypatch, tmp_path):
    """W&B never reaches the network in tests and writes under tmp_path."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


@pytest.fixture(scope="session")
def trained_reverse_run(reverse_corpus, tmp_path_factory) -> tuple[DictConfig, dict]:
    """One small run on the reverse task with all three loggers; returns its config and metrics."""
    from seq2seq_lit.train import train

    output_dir = tmp_path_factory.mktemp("run") / "reverse"
    overrides = TINY + reverse_data_overrides(reverse_corpus) + ["logger=many", "trainer.max_steps=250"]
    cfg = compose_train(overrides, output_dir)
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(output_dir), "WANDB_SILENT": "true"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        metrics = train(cfg)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return cfg, metrics
