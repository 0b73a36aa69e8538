"""Word alignments from attention: gold files (talp, Pharaoh), AER, piece-to-word weights, symmetrization, s2s-align."""

import json

import pytest
import torch

from seq2seq_lit.alignment.files import parse_links, read_alignments
from seq2seq_lit.alignment.hard import encode_words, word_links, word_weights
from seq2seq_lit.alignment.scoring import GoldAlignment, score_alignments, symmetrize
from seq2seq_lit.errors import ConfigError, DataError

from .conftest import run_module


def gold(sure, possible=()):
    return GoldAlignment(frozenset(sure), frozenset(sure) | frozenset(possible))


def test_aer_precision_recall_match_a_hand_computation_with_possible_links():
    # Pair 1: S = {0-0, 1-1}, P = S + {2-1}; A = {0-0, 2-1, 2-2}: |A&S| = 1, |A&P| = 2.
    # Pair 2: S = {0-0}, P = S; A = {0-0}: |A&S| = |A&P| = 1.
    # Corpus: |A| = 4, |S| = 3, |A&S| = 2, |A&P| = 3 -> precision 3/4, recall 2/3, AER = 1 - (2 + 3) / (4 + 3) = 2/7.
    golds = [gold({(0, 0), (1, 1)}, {(2, 1)}), gold({(0, 0)})]
    scores = score_alignments([[(0, 0), (2, 1), (2, 2)], [(0, 0)]], golds)
    assert scores.precision == pytest.approx(3 / 4)
    assert scores.recall == pytest.approx(2 / 3)
    assert scores.aer == pytest.approx(2 / 7)
    assert (scores.predicted, scores.sure) == (4, 3)
    assert score_alignments([[(0, 0), (1, 1)]], [golds[0]]).aer == 0.0
    with pytest.raises(ValueError, match="1 predicted alignments for 2 gold"):
        score_alignments([[]], golds)


def test_talp_is_one_based_with_p_and_pharaoh_zero_based_with_question_mark():
    talp = parse_links("1-1 2-2 3p2", "talp", "gold.talp:1")
    pharaoh = parse_links("0-0 1-1 2?1", "pharaoh", "gold.txt:1")
    assert talp == pharaoh == gold({(0, 0), (1, 1)}, {(2, 1)})
    with pytest.raises(DataError, match=r"gold.talp:3: '1\?2' is not a talp link"):
        parse_links("1-1 1?2", "talp", "gold.talp:3")
    with pytest.raises(DataError, match="indices start at 1; fix: use format pharaoh"):
        parse_links("0-0", "talp", "gold.talp:1")


def test_alignment_files_are_checked_against_the_text(tmp_path):
    src, tgt = ["das Haus", "ja"], ["the house", "yes"]
    path = tmp_path / "gold.talp"
    path.write_text("1-1 2-2\n1-1\n")
    assert read_alignments(path, src, tgt, "talp") == [gold({(0, 0), (1, 1)}), gold({(0, 0)})]
    path.write_text("1-1 2-3\n1-1\n")
    with pytest.raises(DataError, match=rf"{path}:1: link 2-3 points past the sentence pair \(2 source, 2 target"):
        read_alignments(path, src, tgt, "talp")
    path.write_text("1-1 2-2\n")
    with pytest.raises(DataError, match=rf"{path} has 1 lines but the corpus .* has 2 sentence pairs; fix"):
        read_alignments(path, src, tgt, "talp")
    with pytest.raises(ConfigError, match="alignment format 'giza'.*fix: use one of pharaoh, talp"):
        read_alignments(path, src, tgt, "giza")


def test_piece_weights_are_summed_over_source_pieces_and_averaged_over_target_pieces():
    # Source words: [s0 = pieces 0, 1], [s1 = piece 2]; target words: [t0 = piece 0], [t1 = pieces 1, 2].
    weights = torch.tensor([[0.5, 0.2, 0.3], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]])
    words = word_weights(weights, src_words=[0, 0, 1], tgt_words=[0, 1, 1])
    # t0: s0 = 0.5 + 0.2, s1 = 0.3; t1: mean of (0.2, 0.8) and (0.6, 0.4) = (0.4, 0.6).
    torch.testing.assert_close(words, torch.tensor([[0.7, 0.3], [0.4, 0.6]]))
    assert word_links(words) == [(0, 0), (1, 1)]
    assert word_links(words, threshold=0.4) == [(0, 0), (0, 1), (1, 1)]


def test_encode_words_maps_every_piece_to_its_word():
    class Pieces:  # a tokenizer that splits words into 2-character pieces
        def encode(self, word):
            return [len(word[k : k + 2]) for k in range(0, len(word), 2)]

    ids, owners = encode_words(Pieces(), ["Haus", "a", "Baum"])
    assert ids == [2, 2, 1, 2, 2] and owners == [0, 0, 1, 2, 2]


def test_intersection_and_grow_diag_final_of_two_directions():
    forward = {(0, 0), (1, 1), (2, 2)}
    backward = {(0, 0), (1, 1), (2, 2), (0, 2), (3, 0)}
    assert symmetrize(forward, backward, "intersection") == [(0, 0), (1, 1), (2, 2)]
    assert symmetrize(forward, backward, "union") == [(0, 0), (0, 2), (1, 1), (2, 2), (3, 0)]
    # (0, 2) touches (1, 1) but both of its words are aligned already: left out; (3, 0) aligns an unaligned source
    # word: added by the final step although no link is next to it.
    assert symmetrize(forward, backward, "grow-diag-final") == [(0, 0), (1, 1), (2, 2), (3, 0)]
    # grow-diag: (2, 1) is next to (1, 1) and aligns the unaligned source word 2.
    assert symmetrize({(0, 0), (1, 1)}, {(0, 0), (1, 1), (2, 1)}) == [(0, 0), (1, 1), (2, 1)]
    with pytest.raises(ValueError, match="choose one of intersection, union, grow-diag-final"):
        symmetrize(forward, backward, "grow")


@pytest.mark.slow
def test_s2s_align_scores_a_trained_reverse_model_against_the_reverse_gold(trained_reverse_run, reverse_corpus, tmp_path):
    _, metrics = trained_reverse_run
    src = reverse_corpus["test_src"].read_text().splitlines()[:40]
    (tmp_path / "src").write_text("".join(line + "\n" for line in src))
    (tmp_path / "tgt").write_text("".join(" ".join(reversed(line.split())) + "\n" for line in src))
    # Reversal: source word i translates target word n - 1 - i (talp: 1-based).
    (tmp_path / "gold").write_text("".join(" ".join(f"{i + 1}-{n - i}" for i in range(n)) + "\n" for n in (len(s.split()) for s in src)))
    ckpt = metrics["best_model_path"]
    result = run_module(
        "seq2seq_lit.align",
        f"ckpt_path={ckpt}", f"reverse_ckpt_path={ckpt}",  # reversing is its own inverse: the same model both ways
        f"src={tmp_path / 'src'}", f"tgt={tmp_path / 'tgt'}", f"gold={tmp_path / 'gold'}",
        f"output={tmp_path / 'out'}", f"scores_output={tmp_path / 'scores.json'}", "device=cpu",
    )
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "out").read_text().splitlines()
    assert len(lines) == 40 and all(lines)
    scores = json.loads((tmp_path / "scores.json").read_text())["scores"]
    assert set(scores) == {"forward", "reverse", "intersection", "grow-diag-final"}
    assert scores["forward"]["predicted"] == sum(len(s.split()) for s in src)  # one link per target word
    assert scores["intersection"]["precision"] >= scores["forward"]["precision"] - 1e-9
    assert 0.0 <= scores["forward"]["aer"] < 1.0
    assert "AER" in result.stdout


@pytest.mark.slow
def test_s2s_align_rejects_a_gold_file_of_the_wrong_length(trained_reverse_run, reverse_corpus, tmp_path):
    _, metrics = trained_reverse_run
    (tmp_path / "gold").write_text("1-1\n")
    result = run_module(
        "seq2seq_lit.align", f"ckpt_path={metrics['best_model_path']}", f"src={reverse_corpus['test_src']}",
        f"tgt={reverse_corpus['test_tgt']}", f"gold={tmp_path / 'gold'}", f"output={tmp_path / 'out'}",
    )
    assert result.returncode == 2
    assert f"{tmp_path / 'gold'} has 1 lines but the corpus" in result.stderr and "Traceback" not in result.stderr
