"""How much gradient reaches each source position: the norm of d loss / d x_j, the encoder's input at source position j,
by distance from the source's end and from its start.

Why. An RNN encoder-decoder without attention sees the source only through the encoder's final state, so the
gradient that reaches an early source word has passed through every later step of the recurrence, where it tends to
shrink (Bengio et al. 1994; Hochreiter & Schmidhuber 1997); attention gives every source position a direct path to every
output step (Bahdanau et al. 2015, Sec. 3.1), so the gradient should not fall with the distance. This module measures
it.

What is measured. x_j is the source embedding at position j (after the embedding dropout, off in eval mode) as the
encoder receives it; the gradient is taken of each sentence's own loss, the mean cross-entropy (nats) per target token
under teacher forcing (no label smoothing), so a sentence's curve does not depend on the batch it is in. The encoder's
*input* is measured, not its outputs: without attention the decoder reads the outputs only through the final state,
which the RNN returns as a tensor of its own, so d loss / d (encoder output) is zero at every position for
``attention=none`` while the gradient through the recurrence is what the claim is about. Padding positions are never
read by the encoder (packed sequences) and are left out of every mean.

With a bidirectional encoder (the default), the backward direction's final state has read the source from its end to
its start, so without attention the first positions are near one of the two final states too: the distance from the
end then shows the forward direction's decay and the distance from the start the backward one's.

Shapes: B sentences, S source pieces (EOS included: distance 0 from the end is EOS), T target steps, E embedding size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..data import collate
from ..errors import ConfigError
from ..modules import Seq2Seq
from ..modules.encoder import reverse_padded


def source_gradient_norms(
    net: Seq2Seq, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, tgt_out: Tensor
) -> Tensor:
    """``(B, S)``: the L2 norm of d loss_b / d x_{b,j} for each sentence b and source position j; 0 on padding.

    loss_b is sentence b's mean cross-entropy per target token (nats) under teacher forcing; x_{b,j} is the ``(E,)``
    embedding the encoder reads at position j. The network runs in eval mode (no dropout) and is put back into the
    mode it was in; no parameter's ``.grad`` is touched.

    Args:
        net: the encoder-decoder.
        src: ``(B, S)`` source ids followed by EOS, padded with ``net.pad_id``; src_lengths: ``(B,)`` (EOS included).
        tgt_in: ``(B, T)`` BOS followed by the reference; tgt_out: ``(B, T)`` the reference followed by EOS.

    Raises:
        ValueError: a sentence has no target token (its loss is undefined).
    """
    inputs: list[Tensor] = []

    def capture(module: torch.nn.Module, args: tuple) -> tuple:
        # A leaf of its own: its gradient is d loss / d x, whether or not the embedding weights require gradients.
        leaf = args[0].detach().requires_grad_(True)
        inputs.append(leaf)
        return (leaf, *args[1:])

    was_training = net.training
    net.eval()
    handle = net.encoder.register_forward_pre_hook(capture)
    try:
        with torch.enable_grad():
            logits, _ = net(src, src_lengths, tgt_in)  # (B, T, V)
            nll = F.cross_entropy(logits.float().transpose(1, 2), tgt_out, ignore_index=net.pad_id, reduction="none")
            tokens = tgt_out.ne(net.pad_id).sum(1)  # (B,)
            if bool((tokens == 0).any()):
                raise ValueError("a sentence of the batch has no target token; fix: leave out pairs with an empty target")
            # Sentences do not interact in eval mode, so the gradient of the sum is each sentence's own.
            (grad,) = torch.autograd.grad((nll.sum(1) / tokens).sum(), inputs)  # (B, S, E)
    finally:
        handle.remove()
        net.train(was_training)
    real = torch.arange(src.size(1), device=src.device) < src_lengths.to(src.device).unsqueeze(1)  # (B, S)
    return grad.norm(dim=-1) * real


@dataclass
class GradientProfile:
    """Mean gradient norm by offset from the end and from the start of the source, over the sentences added.

    Offset k counts the sentences that have a position k (source length, EOS included, above k): ``sentences[k]``.
    ``from_end[k]`` sums the norm at position ``length - 1 - k`` (k = 0 is EOS), ``from_start[k]`` at position k.
    """

    from_end: np.ndarray = field(default_factory=lambda: np.zeros(0))
    from_start: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sentences: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def add(self, norms: Tensor, src_lengths: Tensor) -> None:
        """Add a batch: ``norms`` ``(B, S)`` from :func:`source_gradient_norms`, ``src_lengths`` ``(B,)``."""
        norms, src_lengths = norms.detach().double().cpu(), src_lengths.cpu()
        from_end = reverse_padded(norms, src_lengths)  # (B, S): row b's position length_b - 1 - k at k
        count = (torch.arange(norms.size(1)) < src_lengths.unsqueeze(1)).sum(0)  # (S,)
        size = max(len(self.sentences), norms.size(1))
        self.from_end = _padded(self.from_end, size) + _padded(from_end.sum(0).numpy(), size)
        self.from_start = _padded(self.from_start, size) + _padded(norms.sum(0).numpy(), size)
        self.sentences = _padded(self.sentences, size) + _padded(count.numpy(), size)

    def rows(self) -> list[dict[str, float | int]]:
        """``{"offset", "sentences", "from_end", "from_start"}`` per offset with at least one sentence: the mean norms
        (units of the loss, nats per target token, per unit of embedding)."""
        return [
            {
                "offset": k,
                "sentences": int(n),
                "from_end": float(self.from_end[k] / n),
                "from_start": float(self.from_start[k] / n),
            }
            for k, n in enumerate(self.sentences)
            if n > 0
        ]


def _padded(values: np.ndarray, size: int) -> np.ndarray:
    return np.pad(values, (0, size - len(values)))


def gradient_profile(net: Seq2Seq, batches: Iterator | Sequence) -> GradientProfile:
    """The :class:`GradientProfile` of ``net`` over ``batches`` (:class:`~seq2seq_lit.data.Batch` with targets, on
    the network's device).

    Raises:
        ConfigError: no batch.
        ValueError: a batch has no targets, or a sentence with no target token.
    """
    profile = GradientProfile()
    for batch in batches:
        if batch.tgt_out is None:
            raise ValueError("a batch without targets: the gradient needs the reference translations")
        profile.add(source_gradient_norms(net, batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out), batch.src_lengths)
    if not len(profile.sentences):
        raise ConfigError("no sentence pair to measure the gradient on; fix: pass a split or files with pairs")
    return profile


def encoded_batches(tokenizers, src_lines: Sequence[str], tgt_lines: Sequence[str], batch_size: int, device) -> Iterator:
    """Batches of ``batch_size`` pairs of ``src_lines`` / ``tgt_lines``, encoded with ``tokenizers`` (the model's),
    on ``device``; a pair with an empty side is left out (it has no source word or no target token)."""
    pairs = [
        (k, tokenizers.src.encode(s), tokenizers.tgt.encode(t))
        for k, (s, t) in enumerate(zip(src_lines, tgt_lines))
        if s.strip() and t.strip()
    ]
    for start in range(0, len(pairs), batch_size):
        yield collate(pairs[start : start + batch_size]).to(device)
