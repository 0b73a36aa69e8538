"""Ensemble decoding: several trained models decode together, each step scoring the next token by the mean of the
models' log-probabilities (a product of experts, as OpenNMT-py and Marian combine models).

Shapes: B batch rows (sentences or beams), S source length, V target vocabulary, M models.

Each model keeps its own encoder outputs, attention cache and decoder state; the searches see one model
(:class:`EnsembleNet` has the ``encode`` / ``decode_step`` / ``pad_id`` step API of
:class:`~seq2seq_lit.modules.Seq2Seq`), so greedy, beam and sampling search work unchanged. The attention weights
reported per step (alignments, heatmaps, coverage penalty) are the mean of the models' weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import sentencepiece as spm
import torch
from torch import Tensor, nn

from ..data import Batch
from ..data.tokenizer import SentencePieceTokenizer
from ..errors import DataError
from ..lit_module import Seq2SeqLitModule
from ..modules.seq2seq import EncoderMemory
from ..search import Hypotheses


class PerModel(tuple):
    """One attention cache or decoder state per model, selected and repeated together."""

    def index_select(self, index: Tensor) -> "PerModel":
        return PerModel(part.index_select(index) for part in self)

    def repeat_interleave(self, repeats: int) -> "PerModel":
        return PerModel(part.repeat_interleave(repeats) for part in self)


class EnsembleNet(nn.Module):
    """The step API over M networks that share both vocabularies and their special ids."""

    def __init__(self, nets: Sequence[nn.Module]) -> None:
        super().__init__()
        self.nets = nn.ModuleList(nets)
        self.pad_id = nets[0].pad_id

    def encode(self, src: Tensor, src_lengths: Tensor) -> EncoderMemory:
        """Encode ``src`` ``(B, S)`` with each model."""
        memories = [net.encode(src, src_lengths) for net in self.nets]
        return EncoderMemory(PerModel(m.cache for m in memories), PerModel(m.state for m in memories))

    def decode_step(self, prev_tokens: Tensor, state: PerModel, cache: PerModel) -> tuple[Tensor, PerModel, Tensor]:
        """One step of every model from the previous tokens ``(B,)``: the mean log-probabilities ``(B, V)``, the
        models' new states, and the mean attention weights ``(B, S)``."""
        steps = [net.decode_step(prev_tokens, s, c) for net, s, c in zip(self.nets, state, cache)]
        log_probs = torch.stack([log_probs for log_probs, _, _ in steps]).mean(0)
        weights = torch.stack([weights.float() for _, _, weights in steps]).mean(0)
        return log_probs, PerModel(new_state for _, new_state, _ in steps), weights


class Ensemble(nn.Module):
    """Trained modules decoding as one, with the first one's tokenizers and search; in translate and evaluate it
    stands where one :class:`~seq2seq_lit.lit_module.Seq2SeqLitModule` would (``search``, ``tokenizers``, ``net``,
    ``device``, ``hparams``, called on a batch).

    Args:
        modules: the loaded modules.
        paths: their checkpoint files, for error messages.

    Raises:
        DataError: the checkpoints do not share the source and target tokenizers and special ids, naming the files
            that differ from the first.
    """

    def __init__(self, modules: Sequence[Seq2SeqLitModule], paths: Sequence[str | Path]) -> None:
        super().__init__()
        first = modules[0]
        for module, path in zip(modules[1:], paths[1:]):
            if difference := _vocabulary_difference(first, module):
                raise DataError(
                    f"ensemble ckpt_path: {path} has a different {difference} than {paths[0]}; the models of an "
                    f"ensemble score the same target tokens. Fix: ensemble checkpoints trained with the same "
                    f"tokenizer (the same data and data.tokenizer settings)"
                )
        self.net = EnsembleNet([module.net for module in modules])
        self.tokenizers = first.tokenizers
        self.search = first.search
        self.bos_id, self.eos_id = first.hparams.bos_id, first.hparams.eos_id
        self.hparams = first.hparams  # settings that are not per model (length buckets) are the first one's
        self.size = len(modules)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, batch: Batch) -> Hypotheses:
        """Decode a batch with the search."""
        return self.search(self.net, batch.src, batch.src_lengths, self.bos_id, self.eos_id)


def _pieces(tokenizer: SentencePieceTokenizer) -> list[str]:
    processor = spm.SentencePieceProcessor()
    processor.LoadFromSerializedProto(tokenizer.model_bytes)
    ids = tokenizer.vocabulary if tokenizer.vocabulary is not None else range(processor.get_piece_size())
    return [processor.id_to_piece(i) for i in ids]


def _piece_difference(first: SentencePieceTokenizer, other: SentencePieceTokenizer) -> str:
    """How ``other``'s vocabulary differs from ``first``'s: the sizes, else the first id whose piece differs, else
    the model's other settings (same pieces, other scores or normalization)."""
    a, b = _pieces(first), _pieces(other)
    if len(a) != len(b):
        return f"{len(b)} pieces vs {len(a)}"
    if a != b:
        k = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
        changed = sum(x != y for x, y in zip(a, b))
        return f"the same size, {len(a)} pieces, but id {k} is {b[k]!r} in it and {a[k]!r} in the first; {changed} {'id differs' if changed == 1 else 'ids differ'}"
    return f"the same {len(a)} pieces, but another sentencepiece model (piece scores or normalization rules)"


def _vocabulary_difference(a: Seq2SeqLitModule, b: Seq2SeqLitModule) -> str | None:
    """What differs between the vocabularies of two modules (None: nothing)."""
    for side in ("src", "tgt"):
        x, y = getattr(a.tokenizers, side), getattr(b.tokenizers, side)
        if (x.model_bytes, x.vocabulary) != (y.model_bytes, y.vocabulary):
            return f"{'source' if side == 'src' else 'target'} vocabulary ({_piece_difference(x, y)})"
    ids = ("pad_id", "bos_id", "eos_id")
    if [a.hparams[k] for k in ids] != [b.hparams[k] for k in ids]:
        return "pad/bos/eos ids"
    return None
