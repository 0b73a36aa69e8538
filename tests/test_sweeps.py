"""Sweep definitions: every W&B grid combination (and a sample of the Bayesian space) composes as Hydra overrides
and builds a model; the Optuna search space composes; a 2-trial Optuna multirun finishes and returns the metric."""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import hydra
import pytest
import yaml
from omegaconf import OmegaConf

from seq2seq_lit.modules.attention.catalogue import attention_names

from .conftest import CONF_DIR, TINY, compose_train, reverse_data_overrides

REPO = Path(__file__).resolve().parents[1]
SWEEPS = sorted((REPO / "sweeps").glob("*.yaml"))


def args_no_hyphens(params: dict) -> list[str]:
    """``${args_no_hyphens}`` as the W&B agent fills it in (wandb's own function)."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    return create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})["args_no_hyphens"]


def sample(spec: dict, rng: random.Random):
    """One value of a W&B sweep parameter spec (the distributions the sweeps here use)."""
    if "value" in spec:
        return spec["value"]
    if "values" in spec:
        return rng.choice(spec["values"])
    distribution = spec.get("distribution")
    if distribution == "uniform":
        return rng.uniform(spec["min"], spec["max"])
    if distribution == "log_uniform_values":
        return math.exp(rng.uniform(math.log(spec["min"]), math.log(spec["max"])))
    if distribution == "int_uniform":
        return rng.randint(spec["min"], spec["max"])
    raise AssertionError(f"distribution {distribution!r} not handled by this test")


def combinations(sweep: dict) -> list[dict]:
    """Every grid point of a grid sweep; 12 random points of any other."""
    params = sweep["parameters"]
    if sweep["method"] == "grid":
        axes = [[(k, v) for v in (spec["values"] if "values" in spec else [spec["value"]])] for k, spec in params.items()]
        return [dict(point) for point in itertools.product(*axes)]
    rng = random.Random(0)
    return [{k: sample(spec, rng) for k, spec in params.items()} for _ in range(12)]


def build_model(cfg) -> None:
    """Instantiate the LightningModule (checks the attention/decoder/bridge combination) with a small vocabulary."""
    hydra.utils.instantiate(cfg.model, src_vocab_size=20, tgt_vocab_size=20, _recursive_=False)


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_sweep_maximizes_val_bleu_best_and_passes_hydra_overrides(path):
    from wandb.sdk.launch.sweeps.utils import load_sweep_config

    sweep = load_sweep_config(str(path))  # as `wandb sweep` reads it
    assert sweep == yaml.safe_load(path.read_text())
    assert sweep["metric"] == {"name": "val/bleu_best", "goal": "maximize"}
    assert sweep["command"][-3:] == ["-m", "seq2seq_lit.train", "${args_no_hyphens}"]
    assert sweep["method"] in ("grid", "bayes")


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
@pytest.mark.slow
def test_every_sweep_combination_composes_and_builds(path, tmp_path):
    sweep = yaml.safe_load(path.read_text())
    points = combinations(sweep)
    if sweep["method"] == "grid":
        sizes = [len(spec.get("values", [None])) for spec in sweep["parameters"].values()]
        assert len(points) == math.prod(sizes) > 1
    seen = set()
    for point in points:
        overrides = args_no_hyphens(point)
        cfg = compose_train(overrides, tmp_path / "run")
        for key, value in point.items():
            group = key.lstrip("+")
            if (CONF_DIR / group).is_dir():  # a config group: the composed config has the chosen file's settings
                chosen = OmegaConf.load(CONF_DIR / group / f"{value}.yaml")
                if "_target_" in chosen:  # model/attention, model/decoder, model/teacher_forcing
                    assert OmegaConf.select(cfg, group.replace("/", "."))._target_ == chosen._target_, (key, value)
                else:  # logger=wandb (package logger), +hparams_search/hidden=... (package _global_)
                    text = (CONF_DIR / group / f"{value}.yaml").read_text()
                    node = cfg if "@package _global_" in text else OmegaConf.select(cfg, group.replace("/", "."))
                    chosen = OmegaConf.create({k: v for k, v in chosen.items() if k != "defaults"})
                    merged = OmegaConf.merge(OmegaConf.to_container(node), chosen)
                    assert OmegaConf.to_container(merged) == OmegaConf.to_container(node), (key, value)
            else:
                assert OmegaConf.select(cfg, key) == pytest.approx(value), (key, value)
        build_model(cfg)
        seen.add(tuple(overrides))
    assert len(seen) == len(points)  # every combination is a different command


def test_the_attention_grid_sweeps_catalogue_attentions():
    grid = yaml.safe_load((REPO / "sweeps" / "attention_decoder_grid.yaml").read_text())
    swept = grid["parameters"]["model/attention"]["values"]
    unknown = sorted(set(swept) - set(attention_names()))
    assert not unknown, f"sweeps/attention_decoder_grid.yaml sweeps {unknown}, not files of model/attention"
    assert len(set(swept)) == len(swept)


def test_optuna_search_space_composes_and_builds(tmp_path):
    search = OmegaConf.load(CONF_DIR / "hparams_search" / "optuna.yaml")
    assert search.optimized_metric == "val/bleu_best" and search.hydra.sweeper.direction == "maximize"
    params = search.hydra.sweeper.params
    choices = {k: [c.strip() for c in v[len("choice(") : -1].split(",")] for k, v in params.items() if v.startswith("choice(")}
    assert set(choices) == {"+hparams_search/hidden", "model/teacher_forcing"}
    assert {k for k in params if k not in choices} == {"model.optimizer.lr", "model.dropout"}
    for point in itertools.product(*[[(k, c) for c in v] for k, v in choices.items()]):
        cfg = compose_train(["hparams_search=optuna", *(f"{k}={c}" for k, c in point), "model.optimizer.lr=0.003", "model.dropout=0.1"], tmp_path)
        assert cfg.optimized_metric == "val/bleu_best"
        build_model(cfg)


@pytest.mark.slow
def test_two_trial_optuna_multirun_finishes_returns_the_metric_and_keeps_the_study(reverse_corpus, tmp_path):
    import optuna

    sweep_dir = tmp_path / "optuna"
    fixed = [o for o in TINY if not o.startswith(("model.encoder.", "model.decoder.", "model.dropout", "model.optimizer.lr"))]
    args = [
        "-m", "hparams_search=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.n_startup_trials=1",
        *fixed, *reverse_data_overrides(reverse_corpus), "logger=csv", "trainer.max_steps=20",
        "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "callbacks.attention_heatmaps=null",
        f"paths.cache_dir={tmp_path}/cache", f"hydra.sweep.dir={sweep_dir}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "seq2seq_lit.train", *args], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    folders = sorted(p.parent for p in sweep_dir.glob("*/metrics.json"))  # <start time>_0, <start time>_1
    assert [f.name.rsplit("_", 1)[1] for f in folders] == ["0", "1"]
    trials = [json.loads((f / "metrics.json").read_text()) for f in folders]
    results = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    assert isinstance(results.best_value, float) and math.isfinite(results.best_value)
    assert results.best_value == pytest.approx(max(t["val/bleu_best"] for t in trials), abs=1e-3)
    assert set(results.best_params) == {"model.optimizer.lr", "model.dropout", "+hparams_search/hidden", "model/teacher_forcing"}
    overrides = [OmegaConf.load(f / ".hydra" / "overrides.yaml") for f in folders]
    assert all(any(str(o).startswith("+hparams_search/hidden=") for o in trial) for trial in overrides)
    assert "2 finished, 0 failed, 0 stopped" in result.stderr

    # the same command again continues the study kept in the sweep folder (SQLite), with n_trials=1 more
    result = subprocess.run([sys.executable, "-m", "seq2seq_lit.train", *args, "hydra.sweeper.n_trials=1"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="seq2seq-lit", storage=f"sqlite:///{sweep_dir}/optuna.db")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert len(list(sweep_dir.glob("*/metrics.json"))) == 3
