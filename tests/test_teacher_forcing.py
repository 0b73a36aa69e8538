"""Teacher-forcing schedules: values at known steps, the logged ratio during training, and resuming."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from hydra.utils import instantiate

from seq2seq_lit.errors import ConfigError
from seq2seq_lit.teacher_forcing import Constant, Exponential, InverseSigmoid, Linear

from .conftest import TINY, compose_train, reverse_data_overrides


def test_constant():
    assert [Constant(0.75)(i) for i in (0, 10, 10_000)] == [0.75] * 3
    assert [Constant(0.75, warmup_steps=5)(i) for i in (0, 4, 5)] == [1.0, 1.0, 0.75]
    assert Constant(0.3, floor=0.5)(100) == 0.3  # a constant is what it says


def test_linear_reaches_the_floor_and_stays():
    schedule = Linear(start=1.0, decay_steps=100, floor=0.2)
    assert [schedule(i) for i in (0, 25, 50, 100, 1000)] == pytest.approx([1.0, 0.8, 0.6, 0.2, 0.2])
    warm = Linear(start=0.9, decay_steps=10, floor=0.0, warmup_steps=20)
    assert [warm(i) for i in (0, 19, 20, 25, 30)] == pytest.approx([1.0, 1.0, 0.9, 0.45, 0.0])


def test_exponential_is_k_to_the_i():
    schedule = Exponential(k=0.99)
    assert [schedule(i) for i in (0, 1, 100)] == pytest.approx([1.0, 0.99, 0.99**100])
    assert Exponential(k=0.9, floor=0.5)(1000) == 0.5


def test_inverse_sigmoid_follows_bengio_et_al():
    schedule = InverseSigmoid(k=800)
    assert schedule(0) == pytest.approx(800 / 801)
    assert schedule(2500) == pytest.approx(800 / (800 + math.exp(2500 / 800)))
    assert schedule(800 * math.log(800)) == pytest.approx(0.5)
    assert schedule(10**7) == 0.0  # no overflow
    assert InverseSigmoid(k=10, floor=0.25, warmup_steps=3)(2) == 1.0


@pytest.mark.parametrize(
    "bad",
    [
        lambda: Linear(floor=1.5),
        lambda: Linear(decay_steps=0),
        lambda: Exponential(k=1.5),
        lambda: InverseSigmoid(k=0.5),
        lambda: Constant(ratio=2.0),
        lambda: Constant(feed="beam"),
        lambda: Constant(warmup_steps=-1),
    ],
)
def test_bad_settings_name_the_key(bad):
    with pytest.raises(ConfigError, match="model.teacher_forcing"):
        bad()


@pytest.mark.parametrize("name", ["constant", "linear", "exponential", "inverse_sigmoid"])
def test_every_schedule_config_composes(name, tmp_path):
    cfg = compose_train([f"model/teacher_forcing={name}"], tmp_path)
    schedule = instantiate(cfg.model.teacher_forcing)
    assert 0.0 <= schedule(4999) <= 1.0 and schedule(0) == pytest.approx(1.0, abs=0.01)


def logged_ratios(output_dir: Path) -> dict[int, float]:
    """``train/teacher_forcing_ratio`` by step from the CSV logger's metrics.csv."""
    (metrics,) = output_dir.glob("logs/csv/**/metrics.csv") or output_dir.glob("**/metrics.csv")
    with metrics.open() as f:
        return {int(r["step"]): float(r["train/teacher_forcing_ratio"]) for r in csv.DictReader(f) if r["train/teacher_forcing_ratio"]}


SCHEDULE = ["model/teacher_forcing=linear", "model.teacher_forcing.decay_steps=40", "model.teacher_forcing.floor=0.1"]


def run_tiny(reverse_corpus, output_dir: Path, *extra: str) -> dict:
    from seq2seq_lit.train import train

    overrides = TINY + reverse_data_overrides(reverse_corpus) + SCHEDULE + [
        "~logger",
        "+logger.csv._target_=lightning.pytorch.loggers.CSVLogger",
        f"+logger.csv.save_dir={output_dir / 'logs' / 'csv'}",
        "trainer.log_every_n_steps=1",
        "test=false",
        *extra,
    ]
    return train(compose_train(overrides, output_dir))


def test_logged_ratio_follows_the_schedule_and_resumes_exactly(reverse_corpus, tmp_path):
    schedule = Linear(start=1.0, decay_steps=40, floor=0.1)
    first = tmp_path / "first"
    run_tiny(reverse_corpus, first, "trainer.max_steps=20")
    ratios = logged_ratios(first)
    assert sorted(ratios) == list(range(20))
    for step, ratio in ratios.items():
        assert ratio == pytest.approx(schedule(step), abs=1e-6)

    last = first / "checkpoints" / "last.ckpt"
    resumed = tmp_path / "resumed"
    metrics = run_tiny(reverse_corpus, resumed, "trainer.max_steps=30", f"ckpt_path={last}")
    assert metrics["global_step"] == 30
    ratios = logged_ratios(resumed)
    assert sorted(ratios) == list(range(20, 30))  # the schedule goes on where it stopped, not from step 0
    for step, ratio in ratios.items():
        assert ratio == pytest.approx(schedule(step), abs=1e-6)
