"""Guided alignment: targets from word links, the cross-entropy loss, and training with it (train/alignment_loss)."""

import math

import pytest
import torch

from seq2seq_lit.alignment.guided import GuidedAlignment, piece_words
from seq2seq_lit.data import collate
from seq2seq_lit.errors import ConfigError, DataError

from .conftest import TINY, compose_train, reverse_data_overrides

# Piece vocabulary of the fake tokenizers: 0-3 specials, then "▁a", "b", "▁c".
PIECES = ["<pad>", "<unk>", "<s>", "</s>", "\u2581a", "b", "\u2581c"]


class FakeTokenizer:
    vocab_size = len(PIECES)

    def id_to_pieces(self, ids):
        return [PIECES[i] for i in ids]


class FakeTokenizers:
    src = tgt = FakeTokenizer()


def test_piece_words_follow_word_starts_and_leave_out_eos_and_padding():
    batch = collate([(0, [4, 5, 6], [6]), (1, [6], [4, 5])])  # source "ab c" and "c"; targets "c" and "ab"
    starts = torch.tensor([p.startswith("\u2581") for p in PIECES])
    assert piece_words(batch.src, batch.src_lengths, starts).tolist() == [[0, 0, 1, -1], [0, -1, -1, -1]]


def test_targets_spread_a_word_link_over_the_pieces_and_normalize_each_row():
    # Line 0: source words "ab" (pieces 0, 1) and "c" (piece 2); target words "c" (piece 0) and "ab" (pieces 1, 2).
    # Links: source word 0 - target word 1, source word 1 - target word 0.
    guide = GuidedAlignment([frozenset({(0, 1), (1, 0)})], FakeTokenizers())
    batch = collate([(0, [4, 5, 6], [6, 4, 5])])
    targets = guide.targets(batch)[0]  # (T = 4, S = 4): 3 pieces + EOS each
    expected = torch.tensor([[0, 0, 1, 0], [0.5, 0.5, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 0, 0]])
    torch.testing.assert_close(targets, expected)
    # The loss is the cross-entropy over the linked rows only (EOS has none): for uniform weights, log 4 each.
    uniform = torch.full((1, 4, 4), 0.25)
    assert guide.loss(uniform, batch).item() == pytest.approx(math.log(4), rel=1e-4)
    assert guide.loss(expected.unsqueeze(0).clamp(min=1e-9), batch).item() < guide.loss(uniform, batch).item()
    assert GuidedAlignment([frozenset()], FakeTokenizers()).loss(uniform, batch).item() == 0.0


def write_reverse_alignments(path, src_file):
    # Reversal: source word i translates target word n - 1 - i (Pharaoh, 0-based).
    lines = src_file.read_text().splitlines()
    path.write_text("".join(" ".join(f"{i}-{len(s.split()) - 1 - i}" for i in range(len(s.split()))) + "\n" for s in lines))


def guided_overrides(corpus, path, *extra):
    return TINY + reverse_data_overrides(corpus) + [
        "~logger", "trainer.max_steps=30", "trainer.limit_val_batches=1", "test=false",
        "callbacks.attention_heatmaps=null", "callbacks.learning_rate_monitor=null",
        f"model.guided_alignment.file={path}", *extra,
    ]


def test_training_with_guided_alignment_logs_its_loss(reverse_corpus, tmp_path):
    from seq2seq_lit.train import train

    path = tmp_path / "train.align"
    write_reverse_alignments(path, reverse_corpus["train_src"])
    metrics = train(compose_train(guided_overrides(reverse_corpus, path), tmp_path / "run"))
    assert math.isfinite(metrics["train/alignment_loss"]) and metrics["train/alignment_loss"] > 0
    assert math.isfinite(metrics["train/loss"])


def user_error(cfg):
    """The Seq2SeqError that training raises for ``cfg`` (Hydra may wrap it in an instantiation error)."""
    from seq2seq_lit.train import train

    with pytest.raises(Exception) as info:
        train(cfg)
    err = info.value
    while err is not None and not isinstance(err, (ConfigError, DataError)):
        err = err.__cause__
    assert err is not None, info.value
    return err


def test_bad_training_alignments_name_the_file_and_line(reverse_corpus, tmp_path):
    path = tmp_path / "train.align"
    path.write_text("0-0\n")
    err = user_error(compose_train(guided_overrides(reverse_corpus, path), tmp_path / "run"))
    assert isinstance(err, DataError) and f"{path} has 1 lines but the corpus of the training split has 3000" in str(err)
    n = len(reverse_corpus["train_src"].read_text().splitlines())
    path.write_text("0-9\n" + "0-0\n" * (n - 1))
    err = user_error(compose_train(guided_overrides(reverse_corpus, path), tmp_path / "run2"))
    assert isinstance(err, DataError) and f"{path}:1: link 0-9 points past the sentence pair" in str(err)
    err = user_error(compose_train(guided_overrides(reverse_corpus, path, "model/attention=none"), tmp_path / "run3"))
    assert isinstance(err, ConfigError) and "model/attention=none has no attention to guide" in str(err)
    err = user_error(compose_train(guided_overrides(reverse_corpus, path, "model.guided_alignment.format=giza"), tmp_path / "run4"))
    assert isinstance(err, ConfigError) and "model.guided_alignment.format='giza'" in str(err)
