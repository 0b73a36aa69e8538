"""Greedy search on hand-made log-probabilities, without a network."""

from typing import NamedTuple

import torch

from seq2seq_lit.search import GreedySearch

PAD, BOS, EOS, V, S = 0, 2, 3, 8, 4


class StepCount(NamedTuple):
    """A decoder state that counts steps; searches select its rows like a real one."""

    step: int

    def index_select(self, index):
        return self


class ScriptRows(NamedTuple):
    """An attention cache holding which script rows the batch still has."""

    rows: torch.Tensor

    def index_select(self, index):
        return ScriptRows(self.rows[index])


class ScriptedModel:
    """Emits, for row b at step t, the token ``script[b][t]`` with probability 0.9 (EOS once the script ends).

    The attention cache holds the script rows, so that the model knows which sentences a search kept.
    """

    pad_id = PAD

    def __init__(self, script):
        self.script = script
        self.inputs = []

    def encode(self, src, src_lengths):
        self.src_len = src.size(1)
        return ScriptRows(torch.arange(len(self.script))), StepCount(0)  # (cache, state)

    def decode_step(self, prev, state, cache):
        self.inputs.append(prev.clone())
        log_probs = torch.full((len(cache.rows), V), 0.1 / (V - 1)).log()
        for i, b in enumerate(cache.rows.tolist()):
            row = self.script[b]
            log_probs[i, row[state.step] if state.step < len(row) else EOS] = torch.tensor(0.9).log()
        weights = torch.full((len(cache.rows), self.src_len), 1.0 / self.src_len)
        return log_probs, StepCount(state.step + 1), weights


def test_greedy_stops_each_sentence_at_eos_and_pads_after_it():
    model = ScriptedModel([[5, 6, 7], [4], [6, 6, 6, 6, 6]])
    src = torch.ones(3, S, dtype=torch.long)
    hyps = GreedySearch(max_length=50)(model, src, torch.tensor([4, 4, 4]), BOS, EOS)
    assert hyps.token_lists() == [[5, 6, 7], [4], [6, 6, 6, 6, 6]]
    assert hyps.tokens[1].tolist() == [4, EOS, PAD, PAD, PAD, PAD]
    assert hyps.tokens.size(1) == 6  # stops once every row has emitted EOS
    torch.testing.assert_close(hyps.scores, torch.tensor(0.9).log() * torch.tensor([4.0, 2.0, 6.0]))
    assert hyps.attention.shape == (3, 6, S)
    assert model.inputs[0].tolist() == [BOS, BOS, BOS]
    assert model.inputs[1].tolist() == [5, 4, 6]  # each step feeds back the previous argmax
    assert model.inputs[2].tolist() == [6, 6]  # sentence 1 ended (EOS at step 1) and left the batch
    assert [len(x) for x in model.inputs] == [3, 3, 2, 2, 1, 1]


def test_greedy_respects_the_length_cap():
    model = ScriptedModel([[4] * 100])
    search = GreedySearch(max_length=200, max_length_ratio=2.0, max_length_offset=1)
    hyps = search(model, torch.ones(1, 3, dtype=torch.long), torch.tensor([3]), BOS, EOS)
    assert hyps.tokens.size(1) == 7 and hyps.lengths.tolist() == [7]  # 2.0 * 3 + 1
    assert GreedySearch(max_length=5).length_cap(torch.tensor([30])) == 5
