"""Encoder variants (residual, bidirectional bottom layer, reversed source) and embedding sharing."""

from functools import partial

import pytest
import torch

from seq2seq_lit.errors import ConfigError
from seq2seq_lit.modules import GeneralAttention, LuongDecoder, RNNEncoder, Seq2Seq
from seq2seq_lit.modules.encoder import reverse_padded

B, S, E, V = 3, 6, 5, 13


@pytest.fixture
def batch():
    torch.manual_seed(0)
    lengths = torch.tensor([6, 4, 1])
    x = torch.randn(B, S, E).masked_fill((torch.arange(S)[None, :] >= lengths[:, None]).unsqueeze(-1), 0.0)
    return x, lengths


def test_reverse_padded_reverses_real_tokens_only(batch):
    x, lengths = batch
    reversed_x = reverse_padded(x, lengths)
    torch.testing.assert_close(reversed_x[1, :4], x[1, :4].flip(0))
    torch.testing.assert_close(reversed_x[1, 4:], x[1, 4:])
    torch.testing.assert_close(reverse_padded(reversed_x, lengths), x)


def test_reversed_source_reads_backwards_and_returns_outputs_in_source_order(batch):
    x, lengths = batch
    torch.manual_seed(1)
    forward = RNNEncoder(E, hidden_size=4, bidirectional=False)
    backward = RNNEncoder(E, hidden_size=4, bidirectional=False, reverse_source=True)
    backward.load_state_dict(forward.state_dict())
    outputs, final = backward(x, lengths)
    expected, expected_final = forward(reverse_padded(x, lengths), lengths)
    torch.testing.assert_close(outputs, reverse_padded(expected, lengths))
    torch.testing.assert_close(final[0], expected_final[0])
    assert torch.all(outputs[1, 4:] == 0)


def test_residual_layers_add_their_input(batch):
    x, lengths = batch
    torch.manual_seed(2)
    plain = RNNEncoder(E, hidden_size=4, num_layers=2, bidirectional=False, rnn_type="gru")
    residual = RNNEncoder(E, hidden_size=4, num_layers=2, bidirectional=False, rnn_type="gru", residual=True)
    residual.load_state_dict(plain.state_dict())
    first_only = RNNEncoder(E, hidden_size=4, num_layers=1, bidirectional=False, rnn_type="gru")
    first_only.layers[0].load_state_dict(plain.layers[0].state_dict())
    layer1, _ = first_only(x, lengths)
    # layer 2 of the residual stack = GRU_2(layer 1) + layer 1, where the plain stack gives GRU_2(layer 1)
    torch.testing.assert_close(residual(x, lengths)[0], plain(x, lengths)[0] + layer1)


def test_bidirectional_bottom_layer_keeps_every_layer_at_hidden_size(batch):
    x, lengths = batch
    encoder = RNNEncoder(E, hidden_size=8, num_layers=3, bidirectional="bottom", residual=True)
    outputs, (h, c) = encoder(x, lengths)
    assert encoder.layers[0].bidirectional and not encoder.layers[1].bidirectional
    assert outputs.shape == (B, S, 8) and h.shape == c.shape == (3, B, 8)
    with pytest.raises(ConfigError, match="make it even"):
        RNNEncoder(E, hidden_size=7, bidirectional="bottom")
    with pytest.raises(ConfigError, match="valid choices: true, false, bottom"):
        RNNEncoder(E, bidirectional="both")


def make_model(**kwargs):
    sizes = {"src_vocab_size": V, "tgt_vocab_size": V} | kwargs.pop("sizes", {})
    return Seq2Seq(
        **sizes,
        encoder=partial(RNNEncoder, hidden_size=4),
        decoder=partial(LuongDecoder, hidden_size=kwargs.pop("decoder_hidden", 8)),
        attention=GeneralAttention,
        embedding_size=8,
        **kwargs,
    )


def test_tied_and_shared_embeddings_are_one_parameter():
    model = make_model(tie_embeddings=True, share_embeddings=True)
    assert model.generator.weight is model.tgt_embed.weight is model.src_embed.weight
    count = sum(p.numel() for p in model.parameters())
    assert count < sum(p.numel() for p in make_model().parameters()) - 2 * V * 8 + 1


def test_impossible_sharing_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match="model.decoder.hidden_size=8"):
        make_model(tie_embeddings=True, decoder_hidden=16, bridge="learned")
    with pytest.raises(ConfigError, match="per_side_vocab=false"):
        make_model(share_embeddings=True, sizes={"tgt_vocab_size": V + 1})


def test_no_attention_needs_a_bridge_from_the_encoder():
    from seq2seq_lit.modules import NoAttention

    with pytest.raises(ConfigError, match="model.bridge=last or learned"):
        Seq2Seq(V, V, partial(RNNEncoder, hidden_size=4), partial(LuongDecoder, hidden_size=8), NoAttention, bridge="zeros")
