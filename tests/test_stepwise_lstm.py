"""The stepwise LSTM equals nn.LSTM: outputs, final states and every gradient (inputs, initial state, weights)."""

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq_lit.errors import ConfigError
from seq2seq_lit.modules.stepwise_lstm import StepwiseDecoderLSTM, check_impl, packed_lstm, use_stepwise

B, T, E, F_, H = 4, 6, 5, 3, 7


def _grads(tensors):
    grads = [t.grad.clone() for t in tensors]
    for t in tensors:
        t.grad = None
    return grads


def _close(a, b):
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_decoder_steps_equal_nn_lstm_steps(num_layers):
    """Known inputs (B, T, E) plus per-step extra inputs (B, F) that depend on the previous output, as input feeding."""
    torch.manual_seed(0)
    rnn = nn.LSTM(E + F_, H, num_layers=num_layers, batch_first=True)
    known = torch.randn(B, T, E, requires_grad=True)
    h0 = torch.randn(num_layers, B, H, requires_grad=True)
    c0 = torch.randn(num_layers, B, H, requires_grad=True)
    feed_proj = nn.Linear(H, F_)
    leaves = [known, h0, c0, *rnn.parameters(), *feed_proj.parameters()]

    def unroll(stepwise):
        hidden, extra, outputs = (h0, c0), torch.zeros(B, F_), []
        runner = StepwiseDecoderLSTM(rnn, known, hidden, training=False) if stepwise else None
        for t, x in enumerate(known.unbind(1)):
            if stepwise:
                out, hidden = runner.step(x, extra, hidden)
            else:
                out, hidden = rnn(torch.cat([x, extra], -1).unsqueeze(1), hidden)
                out = out.squeeze(1)
            outputs.append(out)
            extra = torch.tanh(feed_proj(out))  # the next step's input depends on this step's output
        return torch.stack(outputs, 1), hidden

    results = []
    for stepwise in (False, True):
        outputs, (h, c) = unroll(stepwise)
        ((outputs * torch.linspace(-1, 1, H)).sum() + (h**2).sum() + (c * 3).sum()).backward()
        results.append(([outputs, h, c], _grads(leaves)))
    _close(*[r[0] for r in results])
    _close(*[r[1] for r in results])


@pytest.mark.parametrize("bidirectional", [True, False])
def test_packed_lstm_equals_nn_lstm(bidirectional):
    torch.manual_seed(0)
    rnn = nn.LSTM(E, H, batch_first=True, bidirectional=bidirectional)
    lengths = torch.tensor([3, 6, 1, 6])  # unsorted, with ties
    x = torch.randn(B, T, E, requires_grad=True)
    leaves = [x, *rnn.parameters()]
    results = []
    for run in (rnn, lambda p: packed_lstm(rnn, p)):
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, (h, c) = run(packed)
        padded, _ = pad_packed_sequence(out, batch_first=True)
        ((padded * torch.linspace(-1, 1, padded.size(-1))).sum() + (h**2).sum() + c.sum()).backward()
        results.append(([padded, h, c], _grads(leaves)))
    _close(*[r[0] for r in results])
    _close(*[r[1] for r in results])


def test_stepwise_without_grad_and_choice():
    torch.manual_seed(0)
    rnn = nn.LSTM(E, H, batch_first=True, bidirectional=True)
    packed = pack_padded_sequence(torch.randn(B, T, E), torch.tensor([6, 5, 2, 1]), batch_first=True)
    with torch.no_grad():
        expected, _ = rnn(packed)
        got, _ = packed_lstm(rnn, packed)
    torch.testing.assert_close(got.data, expected.data)
    assert use_stepwise("auto", rnn, torch.device("cpu")) and not use_stepwise("auto", rnn, torch.device("cuda"))
    with torch.no_grad():  # inference: PyTorch's fused LSTM is the faster one
        assert not use_stepwise("auto", rnn, torch.device("cpu")) and use_stepwise("stepwise", rnn, torch.device("cpu"))
    assert use_stepwise("stepwise", rnn, torch.device("cuda")) and not use_stepwise("torch", rnn, torch.device("cpu"))
    assert not use_stepwise("stepwise", nn.GRU(E, H), torch.device("cpu"))  # only LSTMs have a stepwise kernel
    with pytest.raises(ConfigError, match="model.encoder.lstm_impl='fast'; valid choices: auto, torch, stepwise"):
        check_impl("fast", "model.encoder.lstm_impl")


def test_an_unroll_frees_its_graph_after_backward():
    """The tape must not hold the graph (a cycle through the autograd nodes that was never freed: ~17 MB per step)."""
    import gc

    from seq2seq_lit.modules import stepwise_lstm

    torch.manual_seed(0)
    rnn = nn.LSTM(E, H, batch_first=True, bidirectional=True)
    for _ in range(3):
        packed = pack_padded_sequence(torch.randn(B, T, E), torch.tensor([6, 5, 2, 1]), batch_first=True)
        out, (h, c) = packed_lstm(rnn, packed)
        (out.data.sum() + h.sum() + c.sum()).backward()
        del out, h, c
    gc.collect()
    assert not [o for o in gc.get_objects() if isinstance(o, stepwise_lstm._Tape)]
