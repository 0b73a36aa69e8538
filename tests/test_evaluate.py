"""s2s-eval on the reverse task: output files, agreement with training's test stage, decoding overrides, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sacrebleu

from seq2seq_lit.errors import ConfigError, DataError
from seq2seq_lit.evaluate import evaluate
from seq2seq_lit.metrics import corpus_metrics

from .conftest import compose_train, run_module


def eval_overrides(ckpt_path: str, corpus: dict[str, Path], split: str = "test") -> list[str]:
    """Only the split's two files: evaluation needs no training or validation files."""
    return [
        f"ckpt_path={ckpt_path}",
        "data=parallel_text",
        f"data.{split}_src={corpus[f'{split}_src']}",
        f"data.{split}_tgt={corpus[f'{split}_tgt']}",
        f"data.split={split}",
        "device=cpu",
    ]


def test_corpus_metrics_match_sacrebleu_with_signatures():
    hyps, refs = ["the cat sat on the mat .", "a dog runs"], ["the cat sat on a mat .", "a dog is running"]
    metrics = corpus_metrics(hyps, refs)
    assert metrics["bleu"]["score"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert metrics["chrf"]["score"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert metrics["ter"]["score"] == pytest.approx(sacrebleu.corpus_ter(hyps, [refs]).score)
    assert metrics["bleu"]["signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert "tok:tercom" in metrics["ter"]["signature"] and "nc:6" in metrics["chrf"]["signature"]
    with pytest.raises(ValueError, match="2 hypotheses for 1 references"):
        corpus_metrics(hyps, refs[:1])


@pytest.mark.slow
def test_eval_cli_writes_hypotheses_and_reproduces_the_test_bleu_of_training(trained_reverse_run, reverse_corpus, tmp_path):
    _, train_metrics = trained_reverse_run
    out = tmp_path / "eval"
    result = run_module(
        "seq2seq_lit.evaluate",
        *eval_overrides(train_metrics["best_model_path"], reverse_corpus),
        f"output_dir={out}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert result.returncode == 0, result.stderr
    sources = reverse_corpus["test_src"].read_text().splitlines()
    hypotheses = (out / "hypotheses.txt").read_text().split("\n")
    assert hypotheses[-1] == "" and len(hypotheses[:-1]) == len(sources) == 100
    assert sum(h == " ".join(reversed(s.split())) for h, s in zip(hypotheses, sources)) >= 80

    metrics = json.loads((out / "metrics.json").read_text())
    # The same checkpoint (training tests best_model_path) and split: the same scores as training's test stage.
    assert metrics["bleu"] == pytest.approx(train_metrics["test/bleu"], abs=1e-3)
    assert metrics["chrf"] == pytest.approx(train_metrics["test/chrf"], abs=1e-3)
    assert metrics["signatures"]["bleu"] == train_metrics["sacrebleu_signature"]
    assert set(metrics["signatures"]) == {"bleu", "chrf", "ter"} and 0.0 <= metrics["ter"] < 10.0
    bucket_bleu = pytest.approx(train_metrics["test/bleu_src_len_1-10"], abs=1e-3)
    ratio = pytest.approx(train_metrics["test/length_ratio_src_len_1-10"], abs=1e-3)
    assert metrics["bleu_by_source_length"] == {"1-10": {"bleu": bucket_bleu, "sentences": 100, "length_ratio": ratio}}
    assert metrics["global_step"] == train_metrics["global_step"] and metrics["split"] == "test"
    assert metrics["sentences"] == 100 and metrics["decode_seconds"] > 0 and metrics["sentences_per_second"] > 0
    assert "BLEU" in result.stdout and "ter signature: nrefs:1|case:lc|tok:tercom" in result.stdout
    assert (tmp_path / "run" / ".hydra" / "config.yaml").is_file()


def test_val_split_gives_the_best_validation_bleu(trained_reverse_run, reverse_corpus, tmp_path):
    _, train_metrics = trained_reverse_run
    cfg = compose_train(eval_overrides(train_metrics["best_model_path"], reverse_corpus, "val"), tmp_path, "evaluate.yaml")
    metrics = evaluate(cfg)
    # best_model_path is the checkpoint of the best validation
    assert metrics["split"] == "val" and metrics["sentences"] == 100
    assert metrics["bleu"] == pytest.approx(train_metrics["val/bleu_best"], abs=1e-3)
    assert (tmp_path / "hypotheses.txt").is_file() and (tmp_path / "metrics.json").is_file()


def test_search_override_replaces_the_checkpoints_decoding(trained_reverse_run, reverse_corpus, tmp_path):
    _, train_metrics = trained_reverse_run
    overrides = eval_overrides(train_metrics["best_model_path"], reverse_corpus) + [
        "model/search=greedy",
        "model.search.max_length=2",
    ]
    metrics = evaluate(compose_train(overrides, tmp_path, "evaluate.yaml"))
    assert metrics["search"]["max_length"] == 2
    hypotheses = (tmp_path / "hypotheses.txt").read_text().splitlines()
    assert all(len(h.split()) <= 2 for h in hypotheses) and metrics["bleu"] < 10.0


def test_wrong_split_or_missing_files_are_config_errors(trained_reverse_run, reverse_corpus, tmp_path):
    _, train_metrics = trained_reverse_run
    overrides = eval_overrides(train_metrics["best_model_path"], reverse_corpus)  # test files only
    without_split = [o for o in overrides if o != "data.split=test"]
    with pytest.raises(ConfigError, match="data.split='train'; fix: use one of val, test"):
        evaluate(compose_train(without_split + ["data.split=train"], tmp_path, "evaluate.yaml"))
    with pytest.raises(ConfigError, match="data.val_src and data.val_tgt not set"):
        evaluate(compose_train(without_split + ["data.split=val"], tmp_path, "evaluate.yaml"))
    short = tmp_path / "short.tgt"
    short.write_text("a\n")
    with pytest.raises(DataError, match="short.tgt has 1 lines"):
        misaligned = [o for o in overrides if not o.startswith("data.test_tgt=")] + [f"data.test_tgt={short}"]
        evaluate(compose_train(misaligned, tmp_path, "evaluate.yaml"))


@pytest.mark.slow
def test_eval_errors_exit_with_status_2_and_no_traceback(reverse_corpus, tmp_path):
    result = run_module(
        "seq2seq_lit.evaluate", *eval_overrides(str(tmp_path / "missing.ckpt"), reverse_corpus), f"hydra.run.dir={tmp_path}"
    )
    assert result.returncode == 2, result.stderr
    assert "missing.ckpt: checkpoint not found" in result.stderr and "Traceback" not in result.stderr + result.stdout
