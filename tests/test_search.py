"""Greedy search on hand-made log-probabilities, without a network."""

import torch

from seq2seq_lit.search import GreedySearch

PAD, BOS, EOS, V, S = 0, 2, 3, 8, 4


class ScriptedModel:
    """Emits, for row b at step t, the token ``script[b][t]`` with probability 0.9 (EOS once the script ends)."""

    pad_id = PAD

    def __init__(self, script):
        self.script = script
        self.inputs = []

    def encode(self, src, src_lengths):
        return None, 0  # (cache, state): the state counts steps

    def decode_step(self, prev, state, cache):
        self.inputs.append(prev.clone())
        log_probs = torch.full((len(self.script), V), 0.1 / (V - 1)).log()
        for b, row in enumerate(self.script):
            log_probs[b, row[state] if state < len(row) else EOS] = torch.tensor(0.9).log()
        weights = torch.full((len(self.script), S), 1.0 / S)
        return log_probs, state + 1, weights


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


def test_greedy_respects_the_length_cap():
    model = ScriptedModel([[4] * 100])
    search = GreedySearch(max_length=200, max_length_ratio=2.0, max_length_offset=1)
    hyps = search(model, torch.ones(1, 3, dtype=torch.long), torch.tensor([3]), BOS, EOS)
    assert hyps.tokens.size(1) == 7 and hyps.lengths.tolist() == [7]  # 2.0 * 3 + 1
    assert GreedySearch(max_length=5).length_cap(torch.tensor([30])) == 5
