"""Attention score functions: normalization, masking, and one-step == all-steps."""

import pytest
import torch

from seq2seq_lit.modules import AdditiveAttention, GeneralAttention

B, T, S, Q, K = 3, 5, 7, 6, 4
ATTENTIONS = [GeneralAttention, AdditiveAttention]


@pytest.fixture
def inputs():
    torch.manual_seed(0)
    keys = torch.randn(B, S, K)
    src_lengths = torch.tensor([7, 4, 1])
    src_pad_mask = torch.arange(S)[None, :] >= src_lengths[:, None]  # True on padding
    keys = keys.masked_fill(src_pad_mask.unsqueeze(-1), 0.0)
    return torch.randn(B, T, Q), keys, src_pad_mask


@pytest.mark.parametrize("cls", ATTENTIONS)
def test_weights_sum_to_one_and_are_zero_on_padding(cls, inputs):
    query, keys, src_pad_mask = inputs
    attention = cls(query_size=Q, key_size=K)
    context, weights = attention(query, attention.prepare(keys, src_pad_mask))
    assert context.shape == (B, T, K) and weights.shape == (B, T, S)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, T))
    assert torch.all(weights.masked_select(src_pad_mask.unsqueeze(1).expand(B, T, S)) == 0.0)
    assert torch.all(weights[2, :, 0] == 1.0)  # a one-token source gets all the attention


@pytest.mark.parametrize("cls", ATTENTIONS)
def test_scoring_all_steps_equals_step_by_step(cls, inputs):
    query, keys, src_pad_mask = inputs
    attention = cls(query_size=Q, key_size=K)
    cache = attention.prepare(keys, src_pad_mask)
    context, weights = attention(query, cache)
    for t in range(T):
        step_context, step_weights = attention(query[:, t : t + 1], cache)
        torch.testing.assert_close(step_context[:, 0], context[:, t])
        torch.testing.assert_close(step_weights[:, 0], weights[:, t])


def test_general_energy_is_bilinear(inputs):
    query, keys, src_pad_mask = inputs
    attention = GeneralAttention(query_size=Q, key_size=K)
    energy = attention.score(query, attention.project_keys(keys))
    w_a = attention.key_layer.weight  # (Q, K)
    expected = torch.einsum("btq,qk,bsk->bts", query, w_a, keys)
    torch.testing.assert_close(energy, expected)


def test_additive_energy_matches_formula(inputs):
    query, keys, _ = inputs
    attention = AdditiveAttention(query_size=Q, key_size=K, hidden_size=9)
    energy = attention.score(query, attention.project_keys(keys))
    b, t, s = 1, 2, 3
    hidden = torch.tanh(attention.query_layer(query[b, t]) + attention.key_layer(keys[b, s]))
    torch.testing.assert_close(energy[b, t, s], attention.energy_layer(hidden).squeeze())


@pytest.mark.parametrize("cls", ATTENTIONS)
def test_padding_changes_nothing(cls, inputs):
    """Appending padded positions to the source leaves context and real weights unchanged."""
    query, keys, src_pad_mask = inputs
    attention = cls(query_size=Q, key_size=K)
    context, weights = attention(query, attention.prepare(keys, src_pad_mask))
    keys2 = torch.cat([keys, torch.randn(B, 2, K)], dim=1)
    mask2 = torch.cat([src_pad_mask, torch.ones(B, 2, dtype=torch.bool)], dim=1)
    context2, weights2 = attention(query, attention.prepare(keys2, mask2))
    torch.testing.assert_close(context2, context)
    torch.testing.assert_close(weights2[..., :S], weights)
