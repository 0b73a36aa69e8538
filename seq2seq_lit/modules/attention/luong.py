"""Luong et al. 2015, "Effective Approaches to Attention-based Neural Machine Translation", Eq. 8 score functions.

Shapes as in :mod:`seq2seq_lit.modules.attention.base`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...errors import ConfigError
from .bahdanau import AdditiveAttention
from .base import Attention, AttentionCache


class DotAttention(Attention):
    """Luong "dot" score: ``e_ts = h_t^T h_s`` (Luong et al. 2015, Eq. 8). No parameters.

    Raises:
        ConfigError: if the query and key sizes differ (the product needs Q == K).
    """

    def __init__(self, query_size: int, key_size: int) -> None:
        super().__init__(query_size, key_size)
        if query_size != key_size:
            raise ConfigError(
                f"{type(self).__name__} needs the query size (decoder hidden, {query_size}) to equal the key size "
                f"(encoder output, {key_size}); fix: set model.decoder.hidden_size={key_size}, or use "
                "model/attention=general (learns W_a between the two sizes)"
            )

    def score(self, query: Tensor, proj_keys: Tensor) -> Tensor:
        return torch.bmm(query, proj_keys.transpose(1, 2))  # (B, T, S)


class GeneralAttention(Attention):
    """Luong "general" (bilinear) score: ``e_ts = h_t^T W_a h_s`` (Luong et al. 2015, Eq. 8).

    ``W_a`` ``(Q, K)`` is applied to the keys once per batch, so each step costs one ``bmm``.
    """

    def __init__(self, query_size: int, key_size: int) -> None:
        super().__init__(query_size, key_size)
        self.key_layer = nn.Linear(key_size, query_size, bias=False)

    def project_keys(self, keys: Tensor) -> Tensor:
        return self.key_layer(keys)  # (B, S, Q)

    def score(self, query: Tensor, proj_keys: Tensor) -> Tensor:
        return torch.bmm(query, proj_keys.transpose(1, 2))  # (B, T, S)


class ConcatAttention(AdditiveAttention):
    """Luong "concat" score: ``e_ts = v_a^T tanh(W_a [h_t; h_s])`` (Luong et al. 2015, Eq. 8).

    Splitting ``W_a = [W_q, W_k]`` gives ``v_a^T tanh(W_q h_t + W_k h_s)``, which is Bahdanau's additive score, so this
    class only renames :class:`AdditiveAttention` (same arguments, coverage included) to match the paper's name.
    """


class LocationAttention(Attention):
    """Luong "location" score: ``a_t = softmax(W_a h_t)`` (Luong et al. 2015, Sec. 3.1, Eq. 8).

    The energies come from the query alone: ``W_a`` maps it to one energy per source position up to
    ``max_source_length``, truncated to the batch's S; the keys only serve as values.

    Args:
        max_source_length: the longest source (in pieces, EOS included) the model can attend over; 128 by default,
            above training's ``data.max_length`` of 100 pieces.

    Raises:
        ConfigError: from :meth:`prepare`, for a batch whose source is longer than ``max_source_length``.
    """

    def __init__(self, query_size: int, key_size: int, max_source_length: int = 128) -> None:
        super().__init__(query_size, key_size)
        self.max_source_length = max_source_length
        self.energy_layer = nn.Linear(query_size, max_source_length, bias=False)  # W_a

    def prepare(self, keys: Tensor, src_pad_mask: Tensor) -> AttentionCache:
        if keys.size(1) > self.max_source_length:
            raise ConfigError(
                f"a source of {keys.size(1)} pieces is longer than the location attention's max_source_length="
                f"{self.max_source_length}; fix: train with model.attention.max_source_length above the longest "
                "source (training drops pairs longer than data.max_length, but validation, test and translation "
                "inputs are not filtered), shorten the input, or use another model/attention"
            )
        return super().prepare(keys, src_pad_mask)

    def project_keys(self, keys: Tensor) -> Tensor:
        return keys[..., :0]  # (B, S, 0): the score needs only S

    def score(self, query: Tensor, proj_keys: Tensor) -> Tensor:
        return self.energy_layer(query)[..., : proj_keys.size(1)]  # (B, T, S)
