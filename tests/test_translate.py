"""The translate tool with greedy and beam search on the checkpoint of the small reverse-task run."""

from __future__ import annotations

import pytest
import torch

from seq2seq_lit.alignment.hard import hard_alignment, pharaoh, word_index
from seq2seq_lit.inference.checkpoints import load_checkpoint
from seq2seq_lit.inference.translation import translate_nbest
from seq2seq_lit.search import BeamSearch, GreedySearch

from .conftest import run_module


@pytest.fixture(scope="module")
def reverse_module(trained_reverse_run):
    _, metrics = trained_reverse_run
    return load_checkpoint(metrics["best_model_path"])


def test_beam_size_one_equals_greedy_on_a_trained_checkpoint(reverse_module, reverse_corpus):
    lines = reverse_corpus["test_src"].read_text().splitlines()
    reverse_module.search = GreedySearch()
    greedy = translate_nbest(reverse_module, lines, batch_size=32)
    reverse_module.search = BeamSearch(beam_size=1)
    beam = translate_nbest(reverse_module, lines, batch_size=32)
    assert [h[0].text for h in beam] == [h[0].text for h in greedy]
    torch.testing.assert_close(torch.tensor([h[0].score for h in beam]), torch.tensor([h[0].score for h in greedy]))


def test_beam_five_scores_at_least_greedy_per_sentence(reverse_module, reverse_corpus):
    lines = reverse_corpus["test_src"].read_text().splitlines()
    reverse_module.search = GreedySearch()
    greedy = translate_nbest(reverse_module, lines, batch_size=32)
    reverse_module.search = BeamSearch(beam_size=5, n_best=5)
    beam = translate_nbest(reverse_module, lines, batch_size=32)
    for g, hyps in zip(greedy, beam):
        scores = [h.score for h in hyps]
        assert len(hyps) == 5 and scores == sorted(scores, reverse=True)
        assert scores[0] >= g[0].score - 1e-4  # without length penalty the beam never finds a worse best hypothesis


@pytest.mark.slow
def test_translate_cli_writes_n_best_alignments_and_heatmaps(trained_reverse_run, tmp_path):
    _, metrics = trained_reverse_run
    lines = ["a b c", "", "j i h g f e"]
    src = tmp_path / "input.txt"
    src.write_text("\n".join(lines) + "\n")
    out, align, heatmaps = tmp_path / "nbest.txt", tmp_path / "align.txt", tmp_path / "attention"
    result = run_module(
        "seq2seq_lit.translate",
        f"ckpt_path={metrics['best_model_path']}",
        f"input={src}",
        f"output={out}",
        "model/search=beam",
        "model.search.n_best=3",
        f"alignment_output={align}",
        f"attention_dir={heatmaps}",
    )
    assert result.returncode == 0, result.stderr
    rows = [row.split(" ||| ") for row in out.read_text().splitlines()]
    assert [int(r[0]) for r in rows] == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # n_best rows for the empty line too
    assert rows[0][1] == "c b a" and all(r[1:] == ["", "0.0000"] for r in rows[3:6])
    scores = [float(r[2]) for r in rows[:3]]
    assert scores == sorted(scores, reverse=True) and len({r[1] for r in rows[:3]}) == 3
    alignments = align.read_text().split("\n")
    assert len(alignments) == len(lines) + 1 and alignments[1] == ""
    for line, alignment in zip(lines, alignments):
        for pair in alignment.split():
            i, j = map(int, pair.split("-"))
            assert 0 <= i < len(line.split()) and 0 <= j < len(line.split())
    assert "0-2" in alignments[0].split() and "2-0" in alignments[0].split()  # reversing aligns the ends crosswise
    assert sorted(p.name for p in heatmaps.iterdir()) == ["000000.png", "000002.png"]


def test_hard_alignment_by_word_and_piece():
    src = ["▁Ein", "▁Mann", "▁fähr", "t", "</s>"]
    tgt = ["▁A", "▁man", "▁dri", "ves", "</s>"]
    weights = torch.tensor(
        [
            [0.9, 0.1, 0.0, 0.0, 0.0],
            [0.1, 0.8, 0.1, 0.0, 0.0],
            [0.0, 0.0, 0.3, 0.6, 0.1],
            [0.0, 0.0, 0.7, 0.2, 0.1],
            [0.0, 0.0, 0.0, 0.1, 0.9],  # EOS rows and columns are left out
        ]
    )
    assert word_index(src[:4]) == [0, 1, 2, 2]
    assert pharaoh(hard_alignment(weights, src, tgt)) == "0-0 1-1 2-2"
    assert pharaoh(hard_alignment(weights, src, tgt, level="piece")) == "0-0 1-1 2-3 3-2"
    with pytest.raises(ValueError, match="level"):
        hard_alignment(weights, src, tgt, level="sentence")
