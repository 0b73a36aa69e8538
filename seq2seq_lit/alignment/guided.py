"""Guided alignment: a training loss that pulls the attention toward given word alignments (Chen et al. 2016,
"Guided Alignment Training for Topic-Aware NMT"; Garg et al. 2019, Sec. 4; Marian's ``--guided-alignment``).

Shapes: B batch, T target steps, S source positions (EOS included in both, as in :class:`~seq2seq_lit.data.Batch`).

The alignments are Pharaoh lines, one per training pair, between the whitespace words of the training files (e.g.
made by eflomal or fast_align; see docs/attention-length-and-alignment.md). A link between source word i and target
word j links every piece of word j to every piece of word i; each target piece's row of links is normalized to a
distribution A_t, and the loss is the cross-entropy between A_t and the attention weights α_t,

    L_align = -1/R Σ_t Σ_s A_{t,s} log(α_{t,s} + ε),

averaged over the R target pieces that have a link (pieces without one, EOS and padding do not count). The training
objective is ``L_token + weight * L_align``. With multi-head attention the weights guided are the heads' mean, which
the decoder returns.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..data import Batch, Tokenizers
from ..errors import ConfigError
from .files import FORMATS, read_alignments
from .hard import WORD_START

EPSILON = 1e-6


def _word_starts(tokenizer) -> Tensor:
    """``(V,)`` bool: which piece ids open a whitespace word (those starting with "▁")."""
    pieces = tokenizer.id_to_pieces(range(tokenizer.vocab_size))
    return torch.tensor([p.startswith(WORD_START) for p in pieces], dtype=torch.bool)


def piece_words(ids: Tensor, lengths: Tensor, starts: Tensor) -> Tensor:
    """``(B, L)`` 0-based word of each piece of ``ids`` ``(B, L)``; -1 for the last position of each row (EOS) and
    for padding. A first piece that does not open a word still belongs to word 0."""
    opens = starts.to(ids.device)[ids].long()
    words = (opens.cumsum(1) - 1).clamp(min=0)
    positions = torch.arange(ids.size(1), device=ids.device)
    return words.masked_fill(positions >= (lengths - 1).unsqueeze(1), -1)


class GuidedAlignment:
    """The training alignments and the loss of Chen et al. (2016).

    Args:
        links: per training line (corpus order), its ``(source word, target word)`` links.
        tokenizers: the source and target tokenizers of the training data.

    Raises:
        ConfigError: a tokenizer has no piece that opens a word (not a sentencepiece model).
    """

    def __init__(self, links: Sequence[frozenset[tuple[int, int]]], tokenizers: Tokenizers) -> None:
        self.links = [torch.tensor(sorted(line), dtype=torch.long).view(-1, 2) for line in links]
        self.src_starts, self.tgt_starts = _word_starts(tokenizers.src), _word_starts(tokenizers.tgt)
        if not (self.src_starts.any() and self.tgt_starts.any()):
            raise ConfigError("guided alignment needs sentencepiece tokenizers whose pieces mark word starts with '▁'")

    @classmethod
    def from_file(
        cls, path: str, src_lines: Sequence[str], tgt_lines: Sequence[str], tokenizers: Tokenizers, fmt: str = "pharaoh"
    ) -> GuidedAlignment:
        """Read and check the alignment file of the training text (errors as
        :func:`~seq2seq_lit.alignment.files.read_alignments`)."""
        alignments = read_alignments(path, src_lines, tgt_lines, fmt, corpus="of the training split")
        return cls([a.sure for a in alignments], tokenizers)

    def targets(self, batch: Batch) -> Tensor:
        """``(B, T, S)`` row-normalized alignment targets of a training batch (rows of zeros where a target piece has
        no link); ``batch.indices`` are the training lines."""
        src_words = piece_words(batch.src, batch.src_lengths, self.src_starts)  # (B, S)
        tgt_lengths = (batch.tgt_out != 0).sum(1)
        tgt_words = piece_words(batch.tgt_out, tgt_lengths, self.tgt_starts)  # (B, T)
        linked = torch.zeros(len(batch), batch.tgt_out.size(1), batch.src.size(1), dtype=torch.bool, device=batch.src.device)
        for b, line in enumerate(batch.indices.tolist()):
            links = self.links[line].to(batch.src.device)
            if len(links):
                src_match = src_words[b].unsqueeze(1) == links[:, 0]  # (S, K)
                tgt_match = tgt_words[b].unsqueeze(1) == links[:, 1]  # (T, K)
                linked[b] = (tgt_match.float() @ src_match.float().T) > 0
        targets = linked.float()
        return targets / targets.sum(-1, keepdim=True).clamp(min=1.0)

    def loss(self, weights: Tensor, batch: Batch) -> Tensor:
        """The guided-alignment loss of attention ``weights`` ``(B, T, S)`` on ``batch``; 0 when no piece has a link."""
        targets = self.targets(batch)
        rows = targets.sum(-1) > 0  # (B, T)
        if not rows.any():
            return weights.new_zeros(())
        cross_entropy = -(targets * torch.log(weights.float() + EPSILON)).sum(-1)  # (B, T)
        return cross_entropy[rows].mean()


def check_guided_alignment(settings: dict | None, attention: dict) -> None:
    """Check ``model.guided_alignment`` (``file``, ``weight``, ``format``) against the attention config.

    Raises:
        ConfigError: an unknown key or format, a negative weight, or a file with ``model/attention=none`` (there is no
            attention to guide).
    """
    if not settings or not settings.get("file"):
        return
    if unknown := sorted(set(settings) - {"file", "weight", "format"}):
        raise ConfigError(f"unknown model.guided_alignment key(s) {', '.join(unknown)}; fix: use file, weight, format")
    weight = settings.get("weight", 0.0)
    if not isinstance(weight, (int, float)) or weight < 0:
        raise ConfigError(f"model.guided_alignment.weight={weight!r}; fix: use a number >= 0 (e.g. 1.0)")
    if settings.get("format", "pharaoh") not in FORMATS:
        raise ConfigError(f"model.guided_alignment.format={settings.get('format')!r}; fix: use one of {', '.join(FORMATS)}")
    if str(attention.get("_target_", "")).endswith("NoAttention"):
        raise ConfigError(
            "model.guided_alignment.file is set but model/attention=none has no attention to guide; fix: choose an "
            "attention or set model.guided_alignment.file=null"
        )
