"""Early stopping, Lightning's predict path, and gradient accumulation with the project's batching and resume."""

from __future__ import annotations

import random
from pathlib import Path

import hydra
import lightning as L
import pytest
import torch

from seq2seq_lit.inference.checkpoints import load_checkpoint
from seq2seq_lit.inference.translation import translate_lines
from seq2seq_lit.train import train

from .conftest import SYMBOLS, TINY, compose_train, reverse_data_overrides, run_module, write_pairs
from .test_reliability import logged_metrics, resumable_run_args, small_corpus  # noqa: F401 (a fixture)


def test_early_stopping_stops_on_val_bleu_and_the_best_checkpoint_is_tested(small_corpus, tmp_path):
    """min_delta=200 BLEU: no validation after the first counts as an improvement, so patience=2 stops the run at the
    third validation (epochs of 10 steps) instead of step 200; the best checkpoint by val/bleu is tested."""
    overrides = TINY + reverse_data_overrides(small_corpus) + [
        "callbacks=early_stopping", "callbacks.early_stopping.patience=2", "callbacks.early_stopping.min_delta=200",
        "callbacks.attention_heatmaps=null", "logger=csv", "trainer.max_steps=200",
    ]
    metrics = train(compose_train(overrides, tmp_path / "run"))
    assert metrics["global_step"] == 30
    best = Path(metrics["best_model_path"])
    assert best.is_file() and best.name in {"step000010.ckpt", "step000020.ckpt", "step000030.ckpt"}
    scores = [v for (_, key), v in logged_metrics(tmp_path / "run").items() if key == "val/bleu"]
    assert len(scores) == 3 and metrics["val/bleu_best"] == pytest.approx(max(scores), abs=1e-4)
    assert "test/bleu" in metrics


def test_early_stopping_is_off_by_default(tmp_path):
    assert compose_train([], tmp_path).callbacks.early_stopping is None


def test_trainer_predict_returns_the_test_translations_in_corpus_order(trained_reverse_run, reverse_corpus, tmp_path):
    cfg, metrics = trained_reverse_run
    module = load_checkpoint(metrics["best_model_path"])
    datamodule = hydra.utils.instantiate(cfg.data, eval_batch_size=16)
    datamodule.tokenizers = module.tokenizers
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    batches = trainer.predict(module, datamodule=datamodule)
    assert len(batches) == 7  # 100 sentences in batches of 16
    translations = [text for batch in batches for text in batch]
    sources = reverse_corpus["test_src"].read_text().splitlines()
    assert translations == translate_lines(module, sources, batch_size=100)


def equal_length_corpus(folder: Path) -> dict[str, Path]:
    """64 training pairs of 6 symbols, val and test of 8."""
    rng = random.Random(0)
    paths = {}
    for split, n in (("train", 64), ("val", 8), ("test", 8)):
        pairs = []
        for _ in range(n):
            tokens = [rng.choice(SYMBOLS) for _ in range(6)]
            pairs.append((" ".join(tokens), " ".join(reversed(tokens))))
        paths[f"{split}_src"], paths[f"{split}_tgt"] = write_pairs(folder, split, pairs)
    return paths


def first_gradients(corpus: dict[str, Path], run_dir: Path, *overrides: str) -> dict[str, torch.Tensor]:
    path = run_dir / "gradients.pt"
    cfg = compose_train(
        TINY + reverse_data_overrides(corpus) + [
            "trainer.max_steps=1", "trainer.limit_val_batches=0", "trainer.num_sanity_val_steps=0", "test=false",
            "model/scheduler=constant",  # no validation here, so nothing for the plateau schedule to read
            "callbacks.model_checkpoint=null",  # nor for the best checkpoint
            "data.tokenizer.vocab_size=25",  # every symbol one piece: every sentence 6 pieces, every batch as many tokens
            "logger=csv", "callbacks.attention_heatmaps=null", "callbacks.sample_translations=null",
            "+callbacks.gradients._target_=tests.reliability_helpers.SaveFirstGradients", f"+callbacks.gradients.path={path}",
            *overrides,
        ],
        run_dir,
    )
    train(cfg)
    return torch.load(path, weights_only=True)


def test_two_accumulated_batches_of_32_give_the_gradient_of_one_batch_of_64(tmp_path):
    corpus = equal_length_corpus(tmp_path)
    whole = first_gradients(corpus, tmp_path / "64", "data.batch_size=64")
    accumulated = first_gradients(corpus, tmp_path / "2x32", "data.batch_size=32", "+trainer.accumulate_grad_batches=2")
    assert whole.keys() == accumulated.keys() and whole
    for name, grad in whole.items():
        torch.testing.assert_close(accumulated[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def whole_and_resumed_runs(corpus: dict[str, Path], folder: Path, settings: list[str], kill: list[str], saved: str) -> dict[str, Path]:
    """Run :func:`~tests.test_reliability.resumable_run_args` with ``settings`` once uninterrupted ("whole") and once
    stopped by the test callback ``kill`` (SIGINT; the message must contain ``saved``) and resumed ("resumed");
    returns both run folders."""
    runs = {}
    for name, extra in (("whole", []), ("resumed", kill)):
        run_dir = folder / name
        args = resumable_run_args(corpus, run_dir) + settings
        result = run_module("seq2seq_lit.train", *args, *extra)
        if extra:
            assert result.returncode == 130 and saved in result.stderr, result.stderr[-3000:]
            result = run_module("seq2seq_lit.train", *args, "ckpt_path=last")
        assert result.returncode == 0, result.stderr[-3000:]
        runs[name] = run_dir
    return runs


def final_checkpoints(runs: dict[str, Path]) -> dict[str, dict]:
    """The last.ckpt of each run, with equal weights asserted."""
    final = {name: torch.load(run / "checkpoints" / "last.ckpt", weights_only=True) for name, run in runs.items()}
    for name, tensor in final["whole"]["state_dict"].items():
        assert torch.equal(final["resumed"]["state_dict"][name], tensor), name
    return final


@pytest.mark.slow
def test_a_run_interrupted_mid_accumulation_resumes_exactly(small_corpus, tmp_path):
    """Accumulating 2 batches of 32; SIGINT after the 25th batch (mid-window, after 12 optimizer steps): the run saves
    after the window's second batch and the resumed run ends with the uninterrupted run's weights and losses."""
    kill = ["+callbacks.kill._target_=tests.reliability_helpers.SignalAtBatch", "+callbacks.kill.batch=25",
            "+callbacks.kill.signal=SIGINT"]
    settings = ["+trainer.accumulate_grad_batches=2", "trainer.max_steps=30"]
    runs = whole_and_resumed_runs(small_corpus, tmp_path, settings, kill, saved="at step 13")
    final = final_checkpoints(runs)
    assert final["resumed"]["global_step"] == final["whole"]["global_step"] == 30
    whole, resumed = logged_metrics(runs["whole"]), logged_metrics(runs["resumed"])
    after = {(s, k): v for (s, k), v in resumed.items() if s >= 13}
    assert after and after == {key: whole[key] for key in after}
