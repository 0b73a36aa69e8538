"""Encoder, bridge, decoder flows and the seq2seq model on tiny random inputs."""

from functools import partial

import pytest
import torch

from seq2seq_lit.errors import ConfigError
from seq2seq_lit.modules import (
    BahdanauDecoder,
    ConcatAttention,
    DecoderState,
    GeneralAttention,
    LuongDecoder,
    MonotonicLocalAttention,
    NoAttention,
    RNNEncoder,
    Seq2Seq,
)
from seq2seq_lit.modules.attention.catalogue import attention_factory, attention_names

B, S, T, E, V = 3, 7, 5, 6, 11


def make_model(decoder_cls=LuongDecoder, attention=GeneralAttention, rnn_type="lstm", bridge="last", **decoder_kwargs):
    torch.manual_seed(0)
    return Seq2Seq(
        V,
        V,
        encoder=partial(RNNEncoder, hidden_size=4, rnn_type=rnn_type),
        decoder=partial(decoder_cls, hidden_size=8, rnn_type=rnn_type, **decoder_kwargs),
        attention=attention,
        embedding_size=E,
        dropout=0.0,
        bridge=bridge,
    ).eval()


def make_src():
    src_lengths = torch.tensor([7, 3, 1])
    src = torch.randint(4, V, (B, S))
    src = src.masked_fill(torch.arange(S)[None, :] >= src_lengths[:, None], 0)
    return src, src_lengths


@pytest.mark.parametrize("rnn_type", ["lstm", "gru"])
def test_packed_encoder_ignores_padding(rnn_type):
    torch.manual_seed(0)
    encoder = RNNEncoder(E, hidden_size=4, rnn_type=rnn_type, num_layers=2)
    x = torch.randn(1, 4, E)
    outputs, final = encoder(x, torch.tensor([4]))
    padded = torch.cat([x, torch.randn(1, 3, E)], dim=1)  # garbage where padding would be
    outputs_p, final_p = encoder(padded, torch.tensor([4]))
    torch.testing.assert_close(outputs_p[:, :4], outputs)
    assert torch.all(outputs_p[:, 4:] == 0)
    for a, b in zip(final if isinstance(final, tuple) else (final,), final_p if isinstance(final_p, tuple) else (final_p,)):
        torch.testing.assert_close(a, b)
    assert outputs.shape == (1, 4, 8)


FLOWS = [
    (LuongDecoder, {"input_feeding": True}),
    (LuongDecoder, {"input_feeding": False}),
    (BahdanauDecoder, {}),
]


# every choice of model/attention as its YAML builds it, plus coverage variants; encoder outputs K = 2 x 4 = decoder
# hidden 8, so the dot scores fit; windows of radius 1 on 7-token sources
TEST_OPTIONS = {
    "multihead": {"score": "concat", "heads": 2},
    "local_m": {"window": 1},
    "local_p": {"score": "additive", "window": 1},
}
ATTENTIONS = {name: attention_factory(name, **TEST_OPTIONS.get(name, {})) for name in attention_names()}
ATTENTIONS.update(
    coverage=partial(ConcatAttention, coverage=True),
    local_m_coverage=partial(MonotonicLocalAttention, score="additive", window=1, score_options={"coverage": True}),
)


@pytest.mark.parametrize("attention", list(ATTENTIONS))
@pytest.mark.parametrize("decoder_cls,kwargs", FLOWS)
@pytest.mark.parametrize("rnn_type", ["lstm", "gru"])
def test_unroll_equals_step_by_step(decoder_cls, kwargs, attention, rnn_type):
    attention = ATTENTIONS[attention]
    model = make_model(decoder_cls, attention, rnn_type=rnn_type, **kwargs)
    src, src_lengths = make_src()
    tgt_in = torch.randint(4, V, (B, T))
    logits, weights = model(src, src_lengths, tgt_in)
    cache, state = model.encode(src, src_lengths)
    for t in range(T):
        log_probs, state, step_weights = model.decode_step(tgt_in[:, t], state, cache)
        torch.testing.assert_close(log_probs, torch.log_softmax(logits[:, t], -1))
        torch.testing.assert_close(step_weights, weights[:, t])
    assert logits.shape == (B, T, V) and weights.shape == (B, T, S)


def test_luong_without_input_feeding_unrolls_in_one_rnn_call(monkeypatch):
    model = make_model(LuongDecoder, input_feeding=False)
    calls = []
    rnn_forward = model.decoder.rnn.forward
    monkeypatch.setattr(model.decoder.rnn, "forward", lambda *a, **k: calls.append(1) or rnn_forward(*a, **k))
    src, src_lengths = make_src()
    model(src, src_lengths, torch.randint(4, V, (B, T)))
    assert len(calls) == 1
    assert not model.decoder.needs_step_loop
    assert make_model(LuongDecoder, input_feeding=True).decoder.needs_step_loop


def test_teacher_forcing_ratio_zero_feeds_own_predictions():
    model = make_model()
    src, src_lengths = make_src()
    tgt_in = torch.randint(4, V, (B, T))
    logits, _ = model(src, src_lengths, tgt_in, teacher_forcing_ratio=0.0)
    # replay with the model's own argmax as the next input
    cache, state = model.encode(src, src_lengths)
    prev = tgt_in[:, 0]
    for t in range(T):
        log_probs, state, _ = model.decode_step(prev, state, cache)
        torch.testing.assert_close(log_probs, torch.log_softmax(logits[:, t], -1))
        prev = log_probs.argmax(-1)


def record_decoder_inputs(model, monkeypatch) -> list[torch.Tensor]:
    """Record every token id batch that goes through the target embedding."""
    inputs = []
    embed = model.tgt_embed.forward
    monkeypatch.setattr(model.tgt_embed, "forward", lambda ids: inputs.append(ids.clone()) or embed(ids))
    return inputs


def test_parallel_scheduled_sampling_feeds_the_first_pass_predictions(monkeypatch):
    model = make_model(LuongDecoder, input_feeding=False)
    src, src_lengths = make_src()
    tgt_in = torch.randint(4, V, (B, T))
    teacher_forced, _ = model(src, src_lengths, tgt_in)
    inputs = record_decoder_inputs(model, monkeypatch)
    logits, _ = model(src, src_lengths, tgt_in, teacher_forcing_ratio=0.0, parallel=True)
    first, second = inputs  # two one-call unrolls
    assert torch.equal(first, tgt_in)
    assert torch.equal(second[:, 0], tgt_in[:, 0])
    assert torch.equal(second[:, 1:], teacher_forced[:, :-1].argmax(-1))  # the first pass's argmax, shifted
    replay, _ = model(src, src_lengths, second)
    torch.testing.assert_close(logits, replay)


def test_mixed_ratio_flips_a_coin_per_sequence_and_step(monkeypatch):
    model = make_model()
    src, src_lengths = make_src()
    tgt_in = torch.full((B, 40), 5)
    inputs = record_decoder_inputs(model, monkeypatch)
    torch.manual_seed(1)
    model(src, src_lengths, tgt_in, teacher_forcing_ratio=0.5)
    fed = torch.stack(inputs, dim=1)  # (B, T): one embedding call per step
    teacher = fed.eq(5)  # a prediction can be 5 too: rare at random init, and it only blurs the bounds below
    assert 0.2 < teacher[:, 1:].float().mean() < 0.8
    assert not (teacher.all(dim=0) | (~teacher).all(dim=0))[1:].all(), "coins must differ across sequences"


def test_sampled_feed_draws_from_the_model_distribution(monkeypatch):
    model = make_model()
    src, src_lengths = make_src()
    tgt_in = torch.randint(4, V, (B, T))
    # a generator whose output puts (almost) all mass on token 7: both argmax and sample must feed 7
    monkeypatch.setattr(model.generator, "forward", lambda h: torch.zeros(*h.shape[:-1], V).index_fill(-1, torch.tensor([7]), 50.0))
    inputs = record_decoder_inputs(model, monkeypatch)
    model(src, src_lengths, tgt_in, teacher_forcing_ratio=0.0, feed="sample")
    assert all(torch.equal(x, torch.full((B,), 7)) for x in inputs[1:])
    # uniform logits: samples vary while argmax is always token 0
    monkeypatch.setattr(model.generator, "forward", lambda h: torch.zeros(*h.shape[:-1], V))
    inputs.clear()
    model(src, src_lengths, torch.randint(4, V, (B, 30)), teacher_forcing_ratio=0.0, feed="sample")
    assert len(torch.cat(inputs[1:]).unique()) > 3


@pytest.mark.parametrize("attention", list(ATTENTIONS))
@pytest.mark.parametrize("decoder_cls,kwargs", FLOWS[1:])
def test_gradients_reach_the_encoder(attention, decoder_cls, kwargs):
    # bridge=zeros: the gradients must come through the attention's context, not through the decoder's first state
    model = make_model(decoder_cls, ATTENTIONS[attention], bridge="last" if attention == "none" else "zeros", **kwargs)
    src, src_lengths = make_src()
    logits, _ = model.train()(src, src_lengths, torch.randint(4, V, (B, T)))
    logits.sum().backward()
    assert model.encoder.layers[0].weight_ih_l0.grad.abs().sum() > 0
    assert model.src_embed.weight.grad[0].abs().sum() == 0  # padding row untouched


def test_coverage_forces_the_step_loop_and_accumulates_the_weights(monkeypatch):
    model = make_model(LuongDecoder, ATTENTIONS["coverage"], input_feeding=False)
    assert model.decoder.needs_step_loop
    calls = []
    step = model.decoder.step
    monkeypatch.setattr(model.decoder, "step", lambda *a, **k: calls.append(1) or step(*a, **k))
    src, src_lengths = make_src()
    tgt_in = torch.randint(4, V, (B, T))
    _, weights = model(src, src_lengths, tgt_in)
    assert len(calls) == T
    cache, state = model.encode(src, src_lengths)
    for t in range(T):
        _, state, _ = model.decode_step(tgt_in[:, t], state, cache)
    assert state.step == T
    torch.testing.assert_close(state.coverage, weights.sum(1))


def test_decoder_state_rows_are_selected_with_coverage_and_step():
    state = DecoderState((torch.randn(1, B, 8), torch.randn(1, B, 8)), torch.randn(B, 8), torch.rand(B, S), step=4)
    index = torch.tensor([2, 2, 0])
    selected = state.index_select(index)
    torch.testing.assert_close(selected.hidden[1], state.hidden[1][:, index])
    torch.testing.assert_close(selected.input_feed, state.input_feed[index])
    torch.testing.assert_close(selected.coverage, state.coverage[index])
    assert selected.step == 4 and DecoderState(state.hidden).index_select(index).coverage is None


@pytest.mark.parametrize("decoder_cls,kwargs", FLOWS)
def test_without_attention_the_decoder_reads_no_context(decoder_cls, kwargs):
    model = make_model(decoder_cls, NoAttention, **kwargs)
    decoder = model.decoder
    if decoder_cls is LuongDecoder:
        assert decoder.combine.in_features == decoder.hidden_size  # h~_t = tanh(W_c h_t)
        assert decoder.rnn.input_size == E + (decoder.hidden_size if kwargs["input_feeding"] else 0)
    else:
        assert decoder.rnn.input_size == E and decoder.deep_output.in_features == decoder.hidden_size + E
    src, src_lengths = make_src()
    logits, weights = model(src, src_lengths, torch.randint(4, V, (B, T)))
    assert logits.shape == (B, T, V) and torch.all(weights == 0)


@pytest.mark.parametrize("bridge", ["zeros", "last", "learned"])
@pytest.mark.parametrize("rnn_type", ["lstm", "gru"])
def test_bridges(bridge, rnn_type):
    model = make_model(bridge=bridge, rnn_type=rnn_type)
    src, src_lengths = make_src()
    _, state = model.encode(src, src_lengths)
    hidden = state.hidden[0] if rnn_type == "lstm" else state.hidden
    assert hidden.shape == (1, B, 8)
    assert (hidden.abs().sum() == 0) == (bridge == "zeros")


def test_bad_configuration_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match="valid choices: rnn, gru, lstm"):
        make_model(rnn_type="transformer")
    with pytest.raises(ConfigError, match="valid choices: zeros, last, learned"):
        make_model(bridge="magic")
    with pytest.raises(ConfigError, match="bridge=learned"):
        Seq2Seq(V, V, partial(RNNEncoder, hidden_size=4), partial(LuongDecoder, hidden_size=6), GeneralAttention, bridge="last")
