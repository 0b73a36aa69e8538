"""Dynamic int8 quantization for CPU decoding: the LSTM rewrite, closeness to the float model, settings, entry points."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seq2seq_lit.errors import ConfigError
from seq2seq_lit.evaluate import evaluate
from seq2seq_lit.inference.checkpoints import load_checkpoint
from seq2seq_lit.inference.quantization import LinearLSTM, check_quantize, quantize_for_decoding, quantize_int8
from seq2seq_lit.inference.translation import translate_lines
from seq2seq_lit.modules import (
    AdditiveAttention,
    BahdanauDecoder,
    ConcatAttention,
    GeneralAttention,
    LuongDecoder,
    MultiHeadAttention,
)
from seq2seq_lit.search import GreedySearch

from .conftest import compose_train
from .test_evaluate import eval_overrides
from .test_modules import B, make_model, make_src


def is_quantized(module: nn.Module) -> bool:
    return type(module).__module__.startswith("torch.ao.nn.quantized.dynamic")


@pytest.mark.parametrize("hx", [True, False])
def test_linear_lstm_equals_the_lstm_it_is_built_from(hx):
    torch.manual_seed(0)
    lstm = nn.LSTM(5, 8, num_layers=2, batch_first=True).eval()
    x = torch.randn(3, 4, 5)
    state = (torch.randn(2, 3, 8), torch.randn(2, 3, 8)) if hx else None
    with torch.no_grad():
        expected, (h, c) = lstm(x, state)
        got, (got_h, got_c) = LinearLSTM(lstm)(x, state)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got_h, h)
    torch.testing.assert_close(got_c, c)


def test_linear_lstm_refuses_a_bidirectional_lstm():
    with pytest.raises(ConfigError, match="unidirectional"):
        LinearLSTM(nn.LSTM(5, 8, bidirectional=True, batch_first=True))


@pytest.mark.parametrize(
    "decoder_cls, attention, rnn_type, kwargs",
    [
        (LuongDecoder, GeneralAttention, "lstm", {"input_feeding": True}),
        (LuongDecoder, ConcatAttention, "lstm", {"input_feeding": False, "num_layers": 2}),
        (BahdanauDecoder, AdditiveAttention, "lstm", {}),
        (BahdanauDecoder, MultiHeadAttention, "gru", {}),
    ],
)
def test_int8_decoding_follows_the_float_model_and_leaves_it_unchanged(decoder_cls, attention, rnn_type, kwargs):
    bridge = "learned" if kwargs.get("num_layers", 1) > 1 else "last"  # a learned bridge is linear layers, quantized too
    net = make_model(decoder_cls, attention, rnn_type, bridge, **kwargs)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    quantized = quantize_int8(net)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # the float model is untouched
    if rnn_type == "lstm":
        assert isinstance(quantized.decoder.rnn, LinearLSTM)
        assert all(is_quantized(layer) for layer in quantized.decoder.rnn.layers)
    assert is_quantized(quantized.generator) and is_quantized(quantized.encoder.layers[0])

    src, src_lengths = make_src()
    with torch.no_grad():
        (cache, state), (q_cache, q_state) = net.encode(src, src_lengths), quantized.encode(src, src_lengths)
        prev = torch.full((B,), 1)
        for _ in range(4):  # the same tokens fed to both: the int8 model's log-probabilities stay close
            log_probs, state, weights = net.decode_step(prev, state, cache)
            q_log_probs, q_state, q_weights = quantized.decode_step(prev, q_state, q_cache)
            torch.testing.assert_close(q_log_probs, log_probs, atol=0.05, rtol=0.0)
            torch.testing.assert_close(q_weights, weights, atol=0.05, rtol=0.0)
            prev = log_probs.argmax(-1)


def test_quantize_setting_is_checked():
    assert check_quantize(None, "cpu") == "none" and check_quantize("int8", "cpu") == "int8"
    with pytest.raises(ConfigError, match="quantize='int4'; valid choices: none, int8"):
        check_quantize("int4", "cpu")
    with pytest.raises(ConfigError, match="quantize=int8 runs on the CPU only, not on cuda:0; fix: device=cpu"):
        check_quantize("int8", "cuda:0")


def test_int8_translations_of_the_trained_checkpoint_match_the_float_ones(trained_reverse_run, reverse_corpus, tmp_path):
    _, train_metrics = trained_reverse_run
    lines = reverse_corpus["test_src"].read_text().splitlines()
    module = load_checkpoint(train_metrics["best_model_path"])
    module.search = GreedySearch()
    float_texts = translate_lines(module, lines, 32)
    assert quantize_for_decoding(module, "int8") == "int8"
    int8_texts = translate_lines(module, lines, 32)
    assert sum(a == b for a, b in zip(int8_texts, float_texts)) >= 0.95 * len(lines)

    overrides = eval_overrides(train_metrics["best_model_path"], reverse_corpus) + ["quantize=int8"]
    metrics = evaluate(compose_train(overrides, tmp_path, "evaluate.yaml"))
    assert metrics["quantize"] == "int8" and metrics["bleu"] == pytest.approx(train_metrics["test/bleu"], abs=2.0)
