"""Learning-rate schedules: each composes through Hydra, follows its formula with warmup, logs the learning rate,
resumes exactly, and refuses bad settings with the key and the fix."""

from __future__ import annotations

import math
from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import OmegaConf

from seq2seq_lit.errors import ConfigError
from seq2seq_lit.schedules import lightning_schedulers

from .conftest import compose_train, reverse_data_overrides, run_module
from .test_reliability import logged_metrics, small_corpus  # noqa: F401 (a fixture)
from .test_training_options import final_checkpoints, whole_and_resumed_runs

SCHEDULES = ("plateau", "constant", "linear", "cosine", "inverse_sqrt", "noam")


def learning_rates(name: str, steps: int, *overrides: str) -> list[float]:
    """The learning rate of each of ``steps`` optimizer steps under ``model/scheduler=name`` (lr 1.0, 10 steps)."""
    cfg = compose_train([f"model/scheduler={name}", "model.optimizer.lr=1.0", "trainer.max_steps=10", *overrides], Path("unused"))
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=model_cfg["optimizer"]["lr"])
    entries = lightning_schedulers(optimizer, model_cfg["scheduler"], model_cfg["scheduler_config"], max_steps=10)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        for entry in entries:
            if entry["interval"] == "step":
                entry["scheduler"].step()
    return rates


def test_every_schedule_composes_and_steps_as_its_formula_says(tmp_path):
    w = "model.scheduler.warmup_steps=4"
    assert learning_rates("plateau", 10) == [1.0] * 10  # halvings come per epoch, from val/bleu
    assert learning_rates("plateau", 6, w) == pytest.approx([0.25, 0.4375, 0.625, 0.8125, 1.0, 1.0])
    assert learning_rates("constant", 6, w) == pytest.approx([0.25, 0.4375, 0.625, 0.8125, 1.0, 1.0])
    assert learning_rates("linear", 10, "model.scheduler.warmup_steps=2")[2:] == pytest.approx([1, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8])
    cos = learning_rates("cosine", 10, "model.scheduler.warmup_steps=2", "model.scheduler.min_factor=0.1")
    assert cos[2:] == pytest.approx([0.1 + 0.9 * (1 + math.cos(math.pi * k / 8)) / 2 for k in range(8)])
    assert learning_rates("inverse_sqrt", 10, w)[4:] == pytest.approx([math.sqrt(4 / (s + 1)) for s in range(4, 10)])
    noam = learning_rates("noam", 10, w, "model.decoder.hidden_size=16")
    assert noam == pytest.approx([16**-0.5 * min((s + 1) ** -0.5, (s + 1) * 4**-1.5) for s in range(10)])
    assert max(noam) == noam[3]  # the peak is at the end of the warmup


@pytest.mark.parametrize("name", [s for s in SCHEDULES if s != "noam"])
def test_warmup_not_shorter_than_the_run_names_the_key_and_the_fix(name):
    with pytest.raises(ConfigError, match=r"model.scheduler.warmup_steps=10 is not shorter than the run \(trainer.max_steps=10\).*fix"):
        learning_rates(name, 1, "model.scheduler.warmup_steps=10")


def test_decaying_schedules_need_the_run_length():
    with pytest.raises(ConfigError, match="model.scheduler.total_steps=-1.*fix: set trainer.max_steps"):
        learning_rates("cosine", 1, "model.scheduler.total_steps=-1")


@pytest.mark.slow
def test_an_unknown_schedule_lists_the_choices(reverse_corpus, tmp_path):
    result = run_module("seq2seq_lit.train", "model/scheduler=exponential", *reverse_data_overrides(reverse_corpus))
    assert result.returncode != 0
    assert "Could not find 'model/scheduler/exponential'" in result.stderr
    assert all(name in result.stderr for name in SCHEDULES)


@pytest.mark.slow
def test_a_per_step_schedule_logs_every_step_and_resumes_exactly(small_corpus, tmp_path):
    """Cosine with warmup over 30 steps, interrupted by SIGINT at step 12: the resumed run's learning rates and
    scheduler state equal the uninterrupted run's."""
    kill = ["+callbacks.kill._target_=tests.reliability_helpers.SignalAtStep", "+callbacks.kill.step=12",
            "+callbacks.kill.signal=SIGINT"]
    settings = ["model/scheduler=cosine", "model.scheduler.warmup_steps=5", "trainer.max_steps=30"]
    runs = whole_and_resumed_runs(small_corpus, tmp_path, settings, kill, saved="at step 12")
    whole, resumed = logged_metrics(runs["whole"]), logged_metrics(runs["resumed"])
    rates = {step: value for (step, key), value in whole.items() if key == "lr-Adam"}
    assert len(rates) >= 29  # logged per step, not per epoch
    assert rates[0] == pytest.approx(0.01 / 5) and rates[5] == pytest.approx(0.01)
    assert {k: v for k, v in resumed.items() if k[1] == "lr-Adam"} == {k: v for k, v in whole.items() if k[1] == "lr-Adam"}
    final = final_checkpoints(runs)
    assert final["resumed"]["lr_schedulers"] == final["whole"]["lr_schedulers"]


def test_the_default_schedule_is_unchanged():
    cfg = compose_train([], Path("unused"))
    assert OmegaConf.to_container(cfg.model.scheduler) == {
        "_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau", "_partial_": True, "mode": "max", "factor": 0.5,
        "patience": 0, "warmup_steps": 0,
    }
    assert cfg.model.scheduler_config == {"monitor": "val/bleu", "interval": "epoch", "frequency": 1}
    assert hydra.utils.get_class(cfg.model.scheduler._target_) is torch.optim.lr_scheduler.ReduceLROnPlateau
