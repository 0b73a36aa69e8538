"""The gradient by source position (seq2seq_lit/analysis/gradients.py) and s2s-gradients (seq2seq_lit/gradients.py),
on tiny models of the synthetic reverse task."""

from __future__ import annotations

import csv
import shlex
from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import open_dict

from seq2seq_lit.analysis.gradients import GradientProfile, source_gradient_norms
from seq2seq_lit.data import collate
from seq2seq_lit.errors import ConfigError

from .conftest import REPO, TINY, compose_train, reverse_data_overrides

# One unidirectional layer: the claim is about the distance through one recurrence (bridge=last needs the encoder's
# output size to be the decoder's 64).
UNIDIRECTIONAL = ["model.encoder.bidirectional=false", "model.encoder.hidden_size=64"]
QUICK = [
    "~logger", "test=false", "trainer.limit_val_batches=1", "callbacks.attention_heatmaps=null",
    "callbacks.sample_translations=null", "callbacks.learning_rate_monitor=null",
]


def _config(corpus: dict[str, Path], tmp_path: Path, attention: str, *extra: str):
    overrides = TINY + reverse_data_overrides(corpus) + UNIDIRECTIONAL + [f"model/attention={attention}", *extra]
    cfg = compose_train(overrides, tmp_path / "run", config_name="gradients.yaml")
    with open_dict(cfg):
        cfg.output_dir = str(tmp_path / f"gradients-{attention}")
        cfg.sentences = 100
    return cfg


def _rows(output_dir: Path) -> list[dict[str, float]]:
    with open(output_dir / "gradients.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def test_profile_averages_by_offset_over_the_sentences_that_reach_it():
    profile = GradientProfile()
    profile.add(torch.tensor([[1.0, 2.0, 3.0, 0.0], [4.0, 5.0, 0.0, 0.0]]), torch.tensor([3, 2]))
    profile.add(torch.tensor([[6.0]]), torch.tensor([1]))
    assert profile.rows() == [
        {"offset": 0, "sentences": 3, "from_end": (3 + 5 + 6) / 3, "from_start": (1 + 4 + 6) / 3},
        {"offset": 1, "sentences": 2, "from_end": (2 + 4) / 2, "from_start": (2 + 5) / 2},
        {"offset": 2, "sentences": 1, "from_end": 1.0, "from_start": 3.0},
    ]


def test_padding_gets_no_gradient_and_does_not_change_a_sentences_norms(reverse_corpus, tmp_path):
    from seq2seq_lit.build import build_data, build_module

    cfg = _config(reverse_corpus, tmp_path, "general")
    module = build_module(cfg.model, build_data(cfg.data, stage=None))
    short, long = [5, 6, 7], [5, 6, 7, 8, 9, 10, 11]
    batch = collate([(0, short, [8, 9]), (1, long, [10, 11, 12])])
    alone = collate([(0, short, [8, 9])])
    norms = source_gradient_norms(module.net, batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out)
    assert norms.shape == batch.src.shape
    assert (norms[0, len(short) + 1 :] == 0).all(), "a position past the sentence's EOS got gradient"
    assert (norms[:, : len(short) + 1] > 0).all()
    norms_alone = source_gradient_norms(module.net, alone.src, alone.src_lengths, alone.tgt_in, alone.tgt_out)
    torch.testing.assert_close(norms[0, : len(short) + 1], norms_alone[0], rtol=1e-4, atol=1e-9)
    assert all(p.grad is None for p in module.parameters()), "the measurement must not touch parameter gradients"


def test_at_initialization_the_gradient_decays_with_distance_from_the_end_without_attention_only(reverse_corpus, tmp_path):
    """Bengio et al. 1994 / Bahdanau et al. 2015: without attention the gradient reaching a source word falls with
    its distance from the encoder's final state (measured: about x0.5 per piece, ~75x over 7 pieces); with attention
    it stays within a factor of 2 (measured 1.5)."""
    from seq2seq_lit.gradients import measure_gradients

    curves = {}
    for attention in ("none", "general"):
        cfg = _config(reverse_corpus, tmp_path, attention)
        measure_gradients(cfg)
        output_dir = Path(cfg.output_dir)
        assert (output_dir / "gradients.png").stat().st_size > 0
        assert (output_dir / "gradients.md").read_text().startswith("| offset | sentences | from_end | from_start |")
        curves[attention] = _rows(output_dir)
    none, general = (curves[a] for a in ("none", "general"))
    assert none[0]["sentences"] == 100 and none[7]["offset"] == 7
    assert none[0]["from_end"] > 20 * none[7]["from_end"]
    assert all(a["from_end"] > b["from_end"] for a, b in zip(none[:8], none[1:8])), "not monotone without attention"
    assert general[0]["from_end"] < 3 * general[7]["from_end"]


def test_a_trained_checkpoint_is_measured_and_its_gradient_follows_the_loss(reverse_corpus, tmp_path):
    """After 30 steps on the reverse task the `none` model's gradient is largest at the first source pieces: they
    decide the end of the reversed target, which a final state remembers worst, so the loss (and its gradient) is there.
    The gradient shows where the loss is as well as the path to it (measured: 0.034 at the first piece, 0.010 at EOS)."""
    from seq2seq_lit.gradients import measure_gradients
    from seq2seq_lit.train import train

    run = tmp_path / "trained"
    train(compose_train(TINY + reverse_data_overrides(reverse_corpus) + UNIDIRECTIONAL + QUICK + [
        "model/attention=none", "trainer.max_steps=30",
    ], run))
    cfg = _config(reverse_corpus, tmp_path, "none")
    with open_dict(cfg):
        cfg.ckpt_path = str(run / "checkpoints" / "last.ckpt")
    rows = measure_gradients(cfg)
    assert rows == _rows(Path(cfg.output_dir))
    assert rows[0]["from_start"] > 2 * rows[0]["from_end"]


@pytest.mark.parametrize(("override", "message"), [
    ("sentences=0", "sentences=0"), ("batch_size=-1", "batch_size=-1"), ("split=train", "split='train'"),
])
def test_bad_settings_are_one_line_errors(override, message, reverse_corpus, tmp_path):
    from seq2seq_lit.gradients import measure_gradients

    cfg = _config(reverse_corpus, tmp_path, "none")
    key, value = override.split("=")
    with open_dict(cfg):
        cfg[key] = int(value) if value.lstrip("-").isdigit() else value
    with pytest.raises(ConfigError, match=message):
        measure_gradients(cfg)


DOCS_PAGE = REPO / "docs" / "attention-length-and-alignment.md"
CONFIGS = {"seq2seq_lit.train": "train.yaml", "seq2seq_lit.prepare": "prepare.yaml", "seq2seq_lit.gradients": "gradients.yaml"}


def documented_commands() -> list[list[str]]:
    """The words of each command of a code block of the page that runs the gradient tool or uses the long corpus."""
    found, in_block = [], False
    for line in DOCS_PAGE.read_text().splitlines():
        if line.startswith("```"):
            in_block = not in_block
        elif in_block and ("seq2seq_lit.gradients" in line or "data=multi30k_long" in line):
            found.append(shlex.split(line, comments=True))
    return found


def test_the_documented_commands_compose(tmp_path):
    """The 30-minute runs the page documents are not run here; their configs must compose as written and give the
    objects they name (the tool's own runs are the tests above)."""
    commands = documented_commands()
    assert len(commands) == 4
    for words in commands:
        module = words[words.index("-m") + 1]
        overrides = [w.replace("RUN/", f"{tmp_path}/") for w in words[words.index("-m") + 2 :]]
        cfg = compose_train(overrides, tmp_path / "run", config_name=CONFIGS[module])
        if "data=multi30k_long" in overrides:
            assert cfg.data.corpus._target_ == "seq2seq_lit.data.grouped.multi30k_long"
        if module == "seq2seq_lit.gradients" and not cfg.ckpt_path:  # the model at initialization builds
            sizes = {"src_vocab_size": 16, "tgt_vocab_size": 16, "pad_id": 0, "bos_id": 1, "eos_id": 2}
            net = hydra.utils.instantiate(cfg.model, **sizes, _recursive_=False).net
            assert not net.encoder.layers[0].bidirectional
