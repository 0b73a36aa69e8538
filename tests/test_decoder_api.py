"""The decoder API: a flow is its constructor and ``step(embedded, state, cache)``; the teacher-forced unroll, the
stepwise LSTM included, needs nothing more, and refuses a step that breaks the stepwise LSTM's assumptions.

``ResidualFlow`` is the example of docs/extending.md ("a new decoder flow"): copy it and this file's first test.
"""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import Tensor, nn

from seq2seq_lit.modules import AttentionCache, DecoderState, GeneralAttention, RNNDecoder, RNNEncoder, Seq2Seq
from seq2seq_lit.modules.attention import build_attention

B, S, T, E, V = 3, 7, 5, 6, 11


class ResidualFlow(RNNDecoder):
    """``h_t = RNN(y_{t-1}, h_{t-1})``, attend with ``h_t``, output ``tanh(h_t + W c_t)``: a flow of a dozen lines."""

    def __init__(self, embedding_size: int, key_size: int, attention, hidden_size: int = 8, **kwargs) -> None:
        built = build_attention(attention, query_size=hidden_size, key_size=key_size)
        super().__init__(embedding_size, built, hidden_size, **kwargs)  # the RNN reads y_{t-1} alone
        self.project_context = nn.Linear(built.context_size, hidden_size, bias=False)

    def step(self, embedded: Tensor, state: DecoderState, cache: AttentionCache) -> tuple[Tensor, DecoderState, Tensor]:
        rnn_output, hidden = self.run_rnn(embedded, None, state.hidden)  # (B, H)
        context, weights = self.attend(rnn_output.unsqueeze(1), state, cache)  # (B, 1, K), (B, 1, S)
        output = torch.tanh(rnn_output + self.project_context(context.squeeze(1)))
        weights = weights.squeeze(1)
        return self.dropout(output), self.next_state(state, hidden, weights), weights


class TwiceFlow(ResidualFlow):
    """Wrong: runs the RNN twice in one step."""

    def step(self, embedded, state, cache):
        _, hidden = self.run_rnn(embedded, None, state.hidden)
        return super().step(embedded, state._replace(hidden=hidden), cache)


class ScaledInputFlow(ResidualFlow):
    """Wrong: changes the embedding it was given before running the RNN."""

    def step(self, embedded, state, cache):
        return super().step(embedded * 2, state, cache)


def make_model(flow: type[RNNDecoder], lstm_impl: str) -> Seq2Seq:
    torch.manual_seed(0)
    return Seq2Seq(
        V,
        V,
        encoder=partial(RNNEncoder, hidden_size=4),
        decoder=partial(flow, hidden_size=8, num_layers=2, lstm_impl=lstm_impl),
        attention=GeneralAttention,
        embedding_size=E,
        dropout=0.0,
        bridge="learned",
    )


def batch() -> tuple[Tensor, Tensor, Tensor]:
    src_lengths = torch.tensor([7, 3, 1])
    src = torch.randint(4, V, (B, S)).masked_fill(torch.arange(S)[None, :] >= src_lengths[:, None], 0)
    return src, src_lengths, torch.randint(4, V, (B, T))


@pytest.mark.parametrize("lstm_impl", ["stepwise", "torch"])
def test_a_flow_of_one_step_method_unrolls_as_it_steps(lstm_impl):
    model = make_model(ResidualFlow, lstm_impl)
    src, src_lengths, tgt_in = batch()
    logits, weights = model(src, src_lengths, tgt_in)  # the teacher-forced unroll (stepwise LSTM if asked)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    with torch.no_grad():
        cache, state = model.encode(src, src_lengths)
        for t in range(T):
            log_probs, state, step_weights = model.decode_step(tgt_in[:, t], state, cache)
            torch.testing.assert_close(log_probs, torch.log_softmax(logits[:, t], -1))
            torch.testing.assert_close(step_weights, weights[:, t])


@pytest.mark.parametrize(
    "flow,message", [(TwiceFlow, "run the RNN once per step"), (ScaledInputFlow, "another input than that step's embedding")]
)
def test_the_stepwise_lstm_refuses_a_step_it_cannot_serve(flow, message):
    model = make_model(flow, "stepwise")
    with pytest.raises(RuntimeError, match=message):
        model(*batch())
    assert model.decoder._runner is None  # the unroll's runner does not outlive it
    make_model(flow, "torch")(*batch())  # nn.LSTM reads whatever it is given


def test_the_stepwise_lstm_refuses_another_initial_state():
    model = make_model(ResidualFlow, "stepwise")
    decoder = model.decoder
    original = decoder.step

    def step_from_zeros(embedded, state, cache):
        if state.step == 0:
            state = state._replace(hidden=tuple(torch.zeros_like(h) for h in state.hidden))
        return original(embedded, state, cache)

    decoder.step = step_from_zeros
    with pytest.raises(RuntimeError, match="at step 0 another state than the initial one"):
        model(*batch())
