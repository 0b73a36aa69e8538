"""End to end through Hydra-composed configs: training, loggers, checkpoints, translation, and error exits."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import torch

from seq2seq_lit.modules.attention.catalogue import attention_names

from .conftest import TINY, compose_train, reverse_data_overrides, run_module


def test_tiny_model_learns_to_reverse(trained_reverse_run):
    cfg, metrics = trained_reverse_run
    assert metrics["global_step"] == 250
    assert metrics["test/bleu"] >= 90.0, metrics
    assert metrics["val/bleu_best"] >= 90.0
    assert metrics["sacrebleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    saved = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    for key in ("test/bleu", "test/chrf", "sacrebleu_signature", "val/bleu_best", "global_step", "train_seconds"):
        assert key in saved


def test_validation_runs_at_max_steps_and_best_checkpoint_is_tested(trained_reverse_run):
    cfg, metrics = trained_reverse_run
    rows = list(csv.DictReader(open(Path(cfg.paths.output_dir) / "csv" / "version_0" / "metrics.csv")))
    val_steps = [int(r["step"]) for r in rows if r.get("val/bleu")]
    # an epoch is 94 batches: validation after epochs 1 and 2, then at max_steps=250 (mid-epoch)
    assert val_steps[-1] == 249 and len(val_steps) == 3
    assert Path(metrics["best_model_path"]).is_file()


def test_checkpoint_is_weights_only_and_carries_the_tokenizers(trained_reverse_run):
    _, metrics = trained_reverse_run
    checkpoint = torch.load(metrics["best_model_path"], weights_only=True)
    assert "seq2seq_lit_tokenizers" in checkpoint
    assert checkpoint["hyper_parameters"]["attention"]["_target_"].endswith("GeneralAttention")


def wandb_logged_values(run_file: Path, key: str) -> list[float]:
    """Values logged under ``key`` in an offline W&B run file (``run-*.wandb``).

    wandb ships no reader for offline runs, so this finds the protobuf ``HistoryItem`` fields as they are stored:
    ``nested_key`` (field 2) holding ``key``, then ``value_json`` (field 16). Each value is stored twice: in the
    history record and in the summary update that follows it.
    """
    data = run_file.read_bytes()
    name = key.encode()
    pattern = re.escape(b"\x12" + bytes([len(name)]) + name + b"\x82\x01") + rb"(.)"
    values = []
    for match in re.finditer(pattern, data, flags=re.DOTALL):
        start = match.end()
        values.append(float(data[start : start + match.group(1)[0]]))
    return values


def test_wandb_offline_run_has_bleu_and_attention_images(trained_reverse_run):
    cfg, metrics = trained_reverse_run
    runs = list(Path(cfg.paths.output_dir).glob("wandb/offline-run-*"))
    assert len(runs) == 1
    run_file = next(runs[0].glob("run-*.wandb"))
    val_bleu = wandb_logged_values(run_file, "val/bleu")
    assert len(set(val_bleu)) == 3 and max(val_bleu) == pytest.approx(metrics["val/bleu_best"], abs=1e-3)
    test_bleu = wandb_logged_values(run_file, "test/bleu")
    assert test_bleu and all(v == pytest.approx(metrics["test/bleu"], abs=1e-3) for v in test_bleu)
    images = list((runs[0] / "files" / "media" / "images").rglob("*.png"))
    assert len(images) >= 3 and any("attention" in str(p) for p in images)


def test_tensorboard_and_csv_loggers_get_the_same_images(trained_reverse_run):
    cfg, _ = trained_reverse_run
    out = Path(cfg.paths.output_dir)
    assert list((out / "tensorboard").rglob("events.out.tfevents.*"))
    pngs = list((out / "csv" / "version_0" / "images").glob("val_attention_*_step*.png"))
    assert len(pngs) == 3 * 3  # three sentences, three validations




@pytest.mark.slow
def test_translate_keeps_one_line_per_input_line(trained_reverse_run, tmp_path):
    _, metrics = trained_reverse_run
    lines = ["a b c", "", "j i h g f e", "   ", "a b c d e f g h", "x y z", "c"]
    src = tmp_path / "input.txt"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "output.txt"
    result = run_module("seq2seq_lit.translate", f"ckpt_path={metrics['best_model_path']}", f"input={src}", f"output={out}")
    assert result.returncode == 0, result.stderr
    outputs = out.read_text().split("\n")
    assert outputs[-1] == "" and len(outputs[:-1]) == len(lines)
    assert outputs[0] == "c b a" and outputs[2] == "e f g h i j"
    assert outputs[1] == "" and outputs[3] == ""

    piped = run_module("seq2seq_lit.translate", f"ckpt_path={metrics['best_model_path']}", stdin="a b c\n\nd e\n")
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == "c b a\n\ne d\n"


@pytest.mark.slow
def test_bad_input_exits_with_a_message_naming_the_file(reverse_corpus, tmp_path):
    short = tmp_path / "short.tgt"
    short.write_text("a\nb\n")
    args = reverse_data_overrides(reverse_corpus) + [f"paths.log_dir={tmp_path}", f"paths.cache_dir={tmp_path}/cache", "~logger"]
    result = run_module("seq2seq_lit.train", *args, f"data.train_tgt={short}")
    assert result.returncode == 2
    assert str(short) in result.stderr and "Traceback" not in result.stderr + result.stdout

    bad_model = run_module("seq2seq_lit.train", *args, "model.encoder.rnn_type=transformer")
    assert bad_model.returncode == 2 and "valid choices: rnn, gru, lstm" in bad_model.stderr
    assert "Traceback" not in bad_model.stderr + bad_model.stdout

    result = run_module("seq2seq_lit.translate", f"ckpt_path={tmp_path}/missing.ckpt")
    assert result.returncode == 2 and "missing.ckpt" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("attention", attention_names())
@pytest.mark.parametrize("decoder", ["luong", "bahdanau", "luong_no_feed"])
def test_every_attention_and_decoder_composes_and_trains(attention, decoder, reverse_corpus, tmp_path):
    from seq2seq_lit.train import train

    decoder_overrides = ["model/decoder=luong", "model.decoder.input_feeding=false"] if decoder == "luong_no_feed" else [f"model/decoder={decoder}"]
    overrides = TINY + reverse_data_overrides(reverse_corpus) + decoder_overrides + [
        f"model/attention={attention}",
        "~logger",
        "trainer.max_steps=3",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "callbacks.attention_heatmaps=null",
        "callbacks.learning_rate_monitor=null",
    ]
    metrics = train(compose_train(overrides, tmp_path / "run"))
    assert metrics["global_step"] == 3 and torch.isfinite(torch.tensor(metrics["train/loss"]))


@pytest.mark.parametrize("experiment", ["sutskever2014", "bahdanau2015", "luong2015", "gnmt"])
@pytest.mark.slow
def test_seed_architecture_experiments_compose_and_train(experiment, reverse_corpus, tmp_path):
    from seq2seq_lit.train import train

    not_model = [o for o in TINY if not o.startswith("model.")]
    overrides = not_model + reverse_data_overrides(reverse_corpus) + [
        f"experiment={experiment}",
        "~logger",
        "trainer.max_steps=2",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "callbacks.attention_heatmaps=null",
        "callbacks.learning_rate_monitor=null",
    ]
    cfg = compose_train(overrides, tmp_path / "run")
    assert experiment in cfg.tags
    metrics = train(cfg)
    assert metrics["global_step"] == 2 and torch.isfinite(torch.tensor(metrics["train/loss"]))


def test_wandb_run_is_named_by_the_overrides_and_finished(trained_reverse_run):
    import wandb

    cfg, _ = trained_reverse_run
    assert wandb.run is None  # finished, so a multirun's next job starts its own run
    run_dir = next(Path(cfg.paths.output_dir).glob("wandb/offline-run-*"))
    assert b"model.embedding_size=32,model.encoder.hidden_size=32" in next(run_dir.glob("run-*.wandb")).read_bytes()


@pytest.mark.parametrize(
    "overrides",
    [
        ["model/search=beam", "model.search.beam_size=3", "model.search.n_best=2"],
        ["model/teacher_forcing=inverse_sigmoid", "model.teacher_forcing.k=2", "model.teacher_forcing.feed=sample"],
        ["model/teacher_forcing=linear", "model.teacher_forcing.decay_steps=2", "model.teacher_forcing.parallel=true"],
    ],
    ids=["beam-validation", "sampled-feed", "parallel-scheduled-sampling"],
)
def test_search_and_teacher_forcing_options_train_validate_and_test(overrides, reverse_corpus, tmp_path):
    from seq2seq_lit.train import train

    cfg = compose_train(
        TINY + reverse_data_overrides(reverse_corpus) + overrides + ["logger=csv", "trainer.max_steps=4", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1"],
        tmp_path / "run",
    )
    metrics = train(cfg)
    assert metrics["global_step"] == 4 and 0.0 <= metrics["test/bleu"] <= 100.0
    assert list((tmp_path / "run").glob("**/images/val_attention_*.png"))  # heatmaps of the best hypothesis
