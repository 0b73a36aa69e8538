"""Floating-point work of a training step, counted from the layer sizes, and the machine's matrix-product peak.

Shapes: B batch, S source length (padded), T target steps (padded), E embedding size, I an RNN layer's input size,
H hidden size, K key size (encoder outputs), Q query size (decoder hidden), V target vocabulary.

Only matrix products are counted (as ``torch.utils.flop_counter.FlopCounterMode`` does), 2 FLOPs per multiply-add;
embeddings are lookups, and element-wise work (gate nonlinearities, softmax, dropout, the loss) is left out. Forward,
per token or pair:

    encoder, per layer and direction    G H (I + H)    per real source token (packed: padding is never computed)
    attention keys (general)            K Q            per source position (W_a k_s, once per batch)
    decoder RNN, per layer              G H (I + H)    per target position, I = E (+ Q with input feeding)
    attention score + context           Q + K          per (target, source) pair
    combine W_c [c_t; h_t] (Luong)      (K + Q) Q      per target position
    generator                           Q V            per target position
    bridge (learned)                    K H            per sentence, layer and state part

with G the gates of the cell (LSTM 4, GRU 3, plain RNN 1). The backward pass of a matrix product costs two products
of the forward's size (the gradients of both operands), so a step is 3x the forward. "As computed" counts the padded
positions the decoder and attention compute (B x T, B x T x S); "useful" counts real tokens only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

GATES = {nn.LSTM: 4, nn.GRU: 3, nn.RNN: 1}

BACKWARD_FACTOR = 2
"""Backward FLOPs of a matrix product per forward FLOP: the gradient of each of its two operands."""


@dataclass
class StepFlops:
    """FLOPs of one training step.

    Attributes:
        forward: FLOPs of the forward pass by part (encoder, keys, decoder_rnn, attention, combine, generator, bridge).
    """

    forward: dict[str, int] = field(default_factory=dict)

    @property
    def forward_total(self) -> int:
        return sum(self.forward.values())

    @property
    def total(self) -> int:
        """Forward and backward."""
        return (1 + BACKWARD_FACTOR) * self.forward_total


def _rnn_macs_per_token(rnn: nn.RNNBase) -> int:
    """Multiply-adds of one time step of every layer and direction of ``rnn``, for one sequence."""
    gates = next((g for cls, g in GATES.items() if isinstance(rnn, cls)), None)
    if gates is None:
        raise NotImplementedError(f"FLOPs of {type(rnn).__name__} are not counted")
    directions = 2 if rnn.bidirectional else 1
    macs, input_size = 0, rnn.input_size
    for _ in range(rnn.num_layers):
        macs += directions * gates * rnn.hidden_size * (input_size + rnn.hidden_size)
        input_size = directions * rnn.hidden_size
    return macs


def training_step_flops(net: nn.Module, src_lengths: Tensor, tgt_lengths: Tensor, padded: bool = True) -> StepFlops:
    """FLOPs of one teacher-forced training step of ``net`` (a :class:`~seq2seq_lit.modules.Seq2Seq`) on a batch.

    Args:
        src_lengths: ``(B,)`` real source tokens (EOS included), as ``Batch.src_lengths``.
        tgt_lengths: ``(B,)`` real target tokens (``tgt_out`` non-pad), so T is their maximum.
        padded: count the padded target positions and source-target pairs that the decoder and attention compute
            (what the step costs); False counts real tokens only (the useful work).

    Raises:
        NotImplementedError: for a decoder flow or attention whose products are not counted here (counted: the
            Luong flow with or without input feeding; dot, general and no attention).
    """
    from seq2seq_lit.modules.attention import DotAttention, GeneralAttention, NoAttention
    from seq2seq_lit.modules.decoder import LuongDecoder

    decoder, attention = net.decoder, net.decoder.attention
    if not isinstance(decoder, LuongDecoder):
        raise NotImplementedError(f"FLOPs of the {type(decoder).__name__} flow are not counted")
    if type(attention) not in (DotAttention, GeneralAttention, NoAttention):
        raise NotImplementedError(f"FLOPs of {type(attention).__name__} are not counted")
    src_lengths, tgt_lengths = src_lengths.long().cpu(), tgt_lengths.long().cpu()
    batch, src_tokens, tgt_tokens = len(src_lengths), int(src_lengths.sum()), int(tgt_lengths.sum())
    if padded:
        src_positions = batch * int(src_lengths.max())
        tgt_positions = batch * int(tgt_lengths.max())
        pairs = tgt_positions * int(src_lengths.max())
    else:
        src_positions, tgt_positions, pairs = src_tokens, tgt_tokens, int((src_lengths * tgt_lengths).sum())

    query, key = decoder.hidden_size, attention.key_size
    context = attention.context_size
    macs = {
        "encoder": src_tokens * sum(_rnn_macs_per_token(layer) for layer in net.encoder.layers),
        "keys": src_positions * key * query if isinstance(attention, GeneralAttention) else 0,
        "decoder_rnn": tgt_positions * _rnn_macs_per_token(decoder.rnn),
        "attention": pairs * (query + key) if context else 0,
        "combine": tgt_positions * decoder.combine.in_features * decoder.combine.out_features,
        "generator": tgt_positions * net.generator.in_features * net.generator.out_features,
        "bridge": batch * sum(m.in_features * m.out_features for m in net.bridge.modules() if isinstance(m, nn.Linear)),
    }
    return StepFlops({part: 2 * n for part, n in macs.items()})


def counted_step_flops(net: nn.Module, batch, pad_id: int) -> int:
    """FLOPs of one training step (forward, loss, backward) of ``net`` on ``batch`` as
    ``torch.utils.flop_counter.FlopCounterMode`` counts them, in float32, for a cross-check of
    :func:`training_step_flops` (``padded=True``). oneDNN is turned off for the step: its fused RNN kernel is one
    opaque operator that the counter does not see, while PyTorch's native RNN is made of counted matrix products. The
    gradients are left in ``net``'s parameters; zero them before training on.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        with counter:
            logits, _ = net(batch.src, batch.src_lengths, batch.tgt_in)
            loss = nn.functional.cross_entropy(
                logits.flatten(0, 1).float(), batch.tgt_out.flatten(), ignore_index=pad_id, reduction="sum"
            )
            loss.backward()
    finally:
        torch.backends.mkldnn.enabled = enabled
    return counter.get_total_flops()


def matmul_gflops(
    dtype: torch.dtype = torch.float32, size: int = 2048, device: str = "cpu", seconds: float = 1.0
) -> float:
    """GFLOP/s of a ``size x size`` by ``size x size`` matrix product in ``dtype`` on ``device``, the best of
    repeated runs over about ``seconds`` after a warm-up (``2 size^3`` FLOPs each).

    On a CPU that lists AMX but faults on it, bfloat16 needs ``ONEDNN_MAX_CPU_ISA`` set first
    (:func:`~seq2seq_lit.utils.precision.avoid_unusable_amx`).
    """
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    torch.mm(a, b)
    sync()
    best, deadline = float("inf"), time.perf_counter() + seconds
    while True:
        start = time.perf_counter()
        torch.mm(a, b)
        sync()
        best = min(best, time.perf_counter() - start)
        if time.perf_counter() > deadline:
            break
    return 2 * size**3 / best / 1e9
