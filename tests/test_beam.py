"""Beam search on hand-made log-probabilities (no network), and its bookkeeping on a small random Seq2Seq."""

from __future__ import annotations

import math

import pytest
import torch

from seq2seq_lit.errors import ConfigError
from seq2seq_lit.search import BeamSearch, GreedySearch, coverage_penalty, length_penalty

PAD, BOS, EOS, V, S = 0, 2, 3, 8, 4


class Rows:
    """A batch of per-row Python values that the search can repeat, reorder and drop like tensors."""

    def __init__(self, values):
        self.values = list(values)

    def index_select(self, index):
        return Rows(self.values[i] for i in index.tolist())

    def repeat_interleave(self, repeats):
        return Rows(value for value in self.values for _ in range(repeats))


class TableModel:
    """Next-token probabilities looked up by the hypothesis prefix, per sentence.

    ``tables[b][prefix]`` maps tokens to probabilities (the rest of the mass is spread over the other tokens); a
    prefix missing from the table emits EOS with probability 0.9. Attention: uniform over the first ``src_len[b]``
    source tokens.
    """

    pad_id = PAD

    def __init__(self, tables, src_len=None):
        self.tables = tables
        self.src_len = src_len or [S] * len(tables)
        self.calls = 0

    def encode(self, src, src_lengths):
        return Rows(range(len(self.tables))), Rows(() for _ in self.tables)  # cache: sentence; state: prefix

    def decode_step(self, prev, state, cache):
        self.calls += 1
        prefixes = [p + (int(t),) if int(t) != BOS else () for p, t in zip(state.values, prev)]
        log_probs = torch.empty(len(prefixes), V)
        weights = torch.zeros(len(prefixes), S)
        for r, (b, prefix) in enumerate(zip(cache.values, prefixes)):
            table = self.tables[b].get(prefix, {EOS: 0.9})
            rest = (1.0 - sum(table.values())) / (V - len(table))
            log_probs[r] = torch.tensor([table.get(v, rest) for v in range(V)]).log()
            weights[r, : self.src_len[b]] = 1.0 / self.src_len[b]
        return log_probs, Rows(prefixes), weights


# Greedy takes 4 (0.5), then 6 (0.35) and EOS (0.9): 0.1575; the beam finds 5 EOS (0.4 * 0.95 = 0.38).
GARDEN_PATH = {(): {4: 0.5, 5: 0.4}, (4,): {6: 0.35, 7: 0.25, EOS: 0.3}, (5,): {EOS: 0.95}, (4, 6): {EOS: 0.9}}


def decode(search, tables, **kwargs):
    model = TableModel(tables, **kwargs)
    src = torch.ones(len(tables), S, dtype=torch.long)
    return search(model, src, torch.full((len(tables),), S), BOS, EOS)


def test_beam_finds_the_better_hypothesis_that_greedy_misses():
    greedy = decode(GreedySearch(), [GARDEN_PATH])
    beam = decode(BeamSearch(beam_size=2), [GARDEN_PATH])
    assert greedy.token_lists() == [[4, 6]]
    assert beam.token_lists() == [[5]]
    assert beam.tokens[0].tolist() == [5, EOS]
    assert beam.scores[0].item() == pytest.approx(math.log(0.4) + math.log(0.95), abs=1e-5)
    assert beam.scores[0] > greedy.scores[0]


def test_n_best_are_distinct_and_ordered_by_score():
    hyps = decode(BeamSearch(beam_size=4, n_best=4), [GARDEN_PATH])
    assert hyps.n_best == 4 and hyps.tokens.size(0) == 4
    assert hyps.token_lists() == [[5], [4, 6], [4], [4, 7]]
    expected = [math.log(0.4 * 0.95), math.log(0.5 * 0.35 * 0.9), math.log(0.5 * 0.3), math.log(0.5 * 0.25 * 0.9)]
    assert hyps.scores.tolist() == pytest.approx(expected, abs=1e-5)
    assert hyps.best().token_lists() == [[5]]


def test_eos_is_blocked_until_min_length():
    hyps = decode(BeamSearch(beam_size=3, n_best=3, min_length=2), [GARDEN_PATH])
    assert all(length >= 2 for length in hyps.lengths.tolist())
    assert hyps.token_lists()[0] == [4, 6]
    greedy = decode(GreedySearch(min_length=3), [GARDEN_PATH])
    assert greedy.lengths.tolist() == [3]


def test_length_penalty_ranks_longer_hypotheses_higher():
    # A short likely hypothesis (9 EOS: p 0.5) against a long one (4 4 4 4 4 EOS: p 0.45 * 0.99^5)
    long_path = {(): {EOS: 0.5, 4: 0.45}, **{(4,) * n: {4: 0.99} for n in range(1, 5)}, (4,) * 5: {EOS: 0.99}}
    plain = decode(BeamSearch(beam_size=2, n_best=2), [long_path])
    assert plain.token_lists() == [[], [4] * 5]
    penalized = decode(BeamSearch(beam_size=2, n_best=2, alpha=1.0), [long_path])
    assert penalized.token_lists() == [[4] * 5, []]
    long_log_prob = math.log(0.45) + 5 * math.log(0.99)
    assert penalized.scores[0].item() == pytest.approx(long_log_prob / ((5 + 6) / 6), abs=1e-5)
    assert penalized.scores[1].item() == pytest.approx(math.log(0.5) / ((5 + 1) / 6), abs=1e-5)


def test_penalty_formulas():
    assert length_penalty(torch.tensor(1), 0.6).item() == pytest.approx(1.0)
    assert length_penalty(torch.tensor(7), 2.0).item() == pytest.approx(4.0)
    attention = torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.2, 0.3]])  # (T'=2, S=3): coverage 1.0, 0.7, 0.3
    pad = torch.tensor([False, False, False])
    assert coverage_penalty(attention, pad, 0.2).item() == pytest.approx(0.2 * (math.log(0.7) + math.log(0.3)))
    assert coverage_penalty(attention, torch.tensor([False, False, True]), 0.2).item() == pytest.approx(0.2 * math.log(0.7))
    assert coverage_penalty(attention, pad, 0.0).item() == 0.0


def test_finished_sentences_leave_the_batch_and_results_match_one_by_one():
    other = {(): {6: 0.8}, (6,): {6: 0.8}, (6, 6): {7: 0.8}, (6, 6, 7): {EOS: 0.8}}
    search = BeamSearch(beam_size=3, n_best=2, alpha=0.6)
    together = decode(search, [GARDEN_PATH, other, {}], src_len=[4, 2, 3])
    alone = [decode(search, [t], src_len=[n]) for t, n in ((GARDEN_PATH, 4), (other, 2), ({}, 3))]
    assert together.token_lists() == [row for hyps in alone for row in hyps.token_lists()]
    torch.testing.assert_close(together.scores, torch.cat([h.scores for h in alone]))
    # attention of each hypothesis: its own steps, zeros after its end
    lengths = together.lengths.tolist()
    first = together.attention[0]
    assert torch.allclose(first[: lengths[0] + 1].sum(-1), torch.ones(lengths[0] + 1))
    assert first[lengths[0] + 1 :].abs().sum() == 0


def test_length_cap_finishes_the_alive_hypotheses():
    endless = {(4,) * n: {4: 0.99} for n in range(0, 50)}
    hyps = decode(BeamSearch(beam_size=2, max_length=5), [endless])
    assert hyps.token_lists() == [[4] * 5] and hyps.lengths.tolist() == [5]


def test_beam_size_one_is_greedy():
    tables = [GARDEN_PATH, {(): {6: 0.6}, (6,): {7: 0.5}}, {}]
    greedy, beam = decode(GreedySearch(), tables), decode(BeamSearch(beam_size=1), tables)
    assert beam.token_lists() == greedy.token_lists()
    torch.testing.assert_close(beam.scores, greedy.scores)


@pytest.mark.parametrize("kwargs", [{"beam_size": 0}, {"beam_size": 2, "n_best": 3}, {"alpha": -1.0}, {"min_length": -1}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ConfigError, match="model.search"):
        BeamSearch(**kwargs)
