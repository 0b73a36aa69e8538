"""Sentencepiece subword tokenizers: training (cached on disk), encoding, decoding and checkpoint state.

Every model has the same special ids, :data:`PAD_ID`, :data:`UNK_ID`, :data:`BOS_ID` and :data:`EOS_ID`, so the
model and the batching code can use the constants.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import sentencepiece as spm

from seq2seq_lit.data._files import atomic_write_bytes
from seq2seq_lit.errors import ConfigError, DataError

log = logging.getLogger(__name__)

PAD_ID = 0
UNK_ID = 1
BOS_ID = 2
EOS_ID = 3
MODEL_TYPES = ("bpe", "unigram", "char", "word")
DEFAULT_CACHE_DIR = "~/.cache/seq2seq_lit/sentencepiece"
DEFAULT_INPUT_SENTENCE_SIZE = 1_000_000
SAMPLE_SEED = 0
"""Seed of the sentences drawn for training a tokenizer on a corpus larger than ``input_sentence_size``."""
_STATE_VERSION = 2


def _num_threads() -> int:
    # sched_getaffinity respects CPU pinning (e.g. a container's or SLURM's cpuset); cpu_count does not.
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


class SentencePieceTokenizer:
    """A trained sentencepiece model with the special ids PAD_ID=0, UNK_ID=1, BOS_ID=2, EOS_ID=3.

    Args:
        model_bytes: a serialized sentencepiece model (the content of a ``.model`` file).
        vocabulary: if given, the sentencepiece ids this side keeps, in the order of their new ids (the specials
            first, at their usual ids). Pieces outside it encode as UNK. A joint model restricted to the pieces each
            side's training text uses gives each side a smaller vocabulary (as OpenNMT-py builds one per side), which
            shrinks the embeddings and the output layer.

    Raises:
        DataError: the bytes are not a sentencepiece model, its special ids differ from the constants, or the
            vocabulary does not start with the special ids.
    """

    def __init__(self, model_bytes: bytes, vocabulary: Sequence[int] | None = None) -> None:
        processor = spm.SentencePieceProcessor()
        try:
            processor.LoadFromSerializedProto(model_bytes)
        except (RuntimeError, OSError, TypeError) as e:
            raise DataError(
                f"not a valid sentencepiece model ({e}); fix: retrain the tokenizer (delete its cached .model file) "
                f"or load a checkpoint written by seq2seq-lit"
            ) from None
        ids = (processor.pad_id(), processor.unk_id(), processor.bos_id(), processor.eos_id())
        if ids != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            raise DataError(
                f"sentencepiece model has pad/unk/bos/eos ids {ids}, expected {(PAD_ID, UNK_ID, BOS_ID, EOS_ID)}; "
                f"fix: train it with train_sentencepiece (pad_id=0 unk_id=1 bos_id=2 eos_id=3)"
            )
        self._processor = processor
        self._model_bytes = bytes(model_bytes)
        self._vocabulary: list[int] | None = None
        if vocabulary is not None:
            self._vocabulary = [int(i) for i in vocabulary]
            if self._vocabulary[: EOS_ID + 1] != [PAD_ID, UNK_ID, BOS_ID, EOS_ID]:
                raise DataError("a restricted vocabulary must start with the special ids 0, 1, 2, 3; fix: retrain it")
            self._to_model = [UNK_ID] * processor.get_piece_size()  # sentencepiece id -> this side's id
            for model_id, spm_id in enumerate(self._vocabulary):
                self._to_model[spm_id] = model_id

    @classmethod
    def from_bytes(cls, model_bytes: bytes, vocabulary: Sequence[int] | None = None) -> SentencePieceTokenizer:
        """Same as the constructor."""
        return cls(model_bytes, vocabulary)

    def restricted_to(self, texts: Sequence[str]) -> SentencePieceTokenizer:
        """This model with a vocabulary of the specials and the pieces that encoding ``texts`` uses."""
        used = {i for ids in self._processor.encode(list(texts), out_type=int, num_threads=_num_threads()) for i in ids}
        return self.restricted_to_ids(used)

    def restricted_to_ids(self, used: Iterable[int]) -> SentencePieceTokenizer:
        """This model with a vocabulary of the specials and the sentencepiece ids ``used`` (e.g. the distinct ids of an
        encoded corpus), in increasing order."""
        specials = [PAD_ID, UNK_ID, BOS_ID, EOS_ID]
        return SentencePieceTokenizer(self._model_bytes, specials + sorted({int(i) for i in used} - set(specials)))

    @property
    def vocabulary(self) -> list[int] | None:
        """The kept sentencepiece ids (see the constructor), or None when every piece is kept."""
        return self._vocabulary

    @property
    def model_bytes(self) -> bytes:
        """The serialized model."""
        return self._model_bytes

    @property
    def vocab_size(self) -> int:
        """Number of ids, special ones included."""
        return self._processor.get_piece_size() if self._vocabulary is None else len(self._vocabulary)

    def encode(self, text: str) -> list[int]:
        """Piece ids of ``text``, without BOS or EOS."""
        return self._from_spm(self._processor.encode(text, out_type=int))

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Piece ids of each text, without BOS or EOS (encoded in parallel threads)."""
        encoded = self._processor.encode(list(texts), out_type=int, num_threads=_num_threads())
        return encoded if self._vocabulary is None else [self._from_spm(ids) for ids in encoded]

    def encode_flat(self, texts: Sequence[str], num_threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, lengths): the piece ids of all ``texts`` one after the other (int32, without BOS or EOS) and the
        number of pieces of each text (int64); no Python list per text outlives the call.

        ``num_threads``: sentencepiece's encoding threads (None: one per CPU core this process may use).
        """
        threads = _num_threads() if num_threads is None else num_threads
        encoded = self._processor.encode(list(texts), out_type=int, num_threads=threads)
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        ids = np.fromiter(chain.from_iterable(encoded), dtype=np.int32, count=int(lengths.sum()))
        return self.from_spm_ids(ids), lengths

    def from_spm_ids(self, ids: np.ndarray) -> np.ndarray:
        """This side's ids of the sentencepiece ids ``ids`` (an array of any shape); unchanged without a vocabulary."""
        if self._vocabulary is None:
            return ids
        return np.asarray(self._to_model, dtype=np.int32)[ids]

    def _from_spm(self, ids: list[int]) -> list[int]:
        return ids if self._vocabulary is None else [self._to_model[i] for i in ids]

    def _to_spm(self, ids: list[int]) -> list[int]:
        return ids if self._vocabulary is None else [self._vocabulary[i] for i in ids]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of the piece ids ``ids`` (a list or a 1-D tensor); PAD, BOS and EOS ids are skipped wherever they are.

        Nothing is cut at EOS: callers cut hypotheses themselves.
        """
        return self._processor.decode(self._to_spm(self._strip_specials(ids)))

    def decode_batch(self, batch: Iterable[Iterable[int]]) -> list[str]:
        """:meth:`decode` of each row (e.g. of a (B, T) tensor)."""
        return self._processor.decode(
            [self._to_spm(self._strip_specials(ids)) for ids in batch], num_threads=_num_threads()
        )

    def id_to_pieces(self, ids: Iterable[int]) -> list[str]:
        """The piece string of each id (specials included, e.g. "<pad>", "</s>"), e.g. to label attention plots."""
        return self._processor.id_to_piece(self._to_spm(_as_int_list(ids)))

    @staticmethod
    def _strip_specials(ids: Iterable[int]) -> list[int]:
        return [i for i in _as_int_list(ids) if i not in (PAD_ID, BOS_ID, EOS_ID)]

    def __getstate__(self) -> dict[str, Any]:
        # The processor is a C++ object; the bytes are enough to rebuild it (DataLoader workers, deepcopy).
        return {"model_bytes": self._model_bytes, "vocabulary": self._vocabulary}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["model_bytes"], state.get("vocabulary"))  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"SentencePieceTokenizer(vocab_size={self.vocab_size})"


def _as_int_list(ids: Iterable[int]) -> list[int]:
    tolist = getattr(ids, "tolist", None)  # tensors and numpy arrays
    return [int(i) for i in (tolist() if tolist is not None else ids)]


def train_sentencepiece(
    sentences: Sequence[str],
    vocab_size: int = 8000,
    model_type: str = "bpe",
    character_coverage: float = 1.0,
    cache_dir: str | os.PathLike[str] | None = DEFAULT_CACHE_DIR,
) -> SentencePieceTokenizer:
    """Train a sentencepiece model on ``sentences``, or load it from the cache when it was trained before.

    The cache file is ``cache_dir/<sha256 of the sentences and settings>.model`` (the sentencepiece version is part of
    the settings). Training reads every sentence (no sampling, no shuffling), so the model depends only on the
    sentences and the settings.

    Args:
        sentences: training text, one sentence per item.
        vocab_size: number of pieces, special ids included.
        model_type: one of :data:`MODEL_TYPES`.
        character_coverage: share of characters covered by the vocabulary (1.0 for languages with small alphabets).
        cache_dir: cache folder ("~" is expanded); None trains without caching.

    Raises:
        ConfigError: a setting is invalid, or ``vocab_size`` is too large for the corpus (the message gives the
            largest possible value when sentencepiece reports it).
        DataError: ``sentences`` is empty.
    """
    if model_type not in MODEL_TYPES:
        raise ConfigError(
            f"data.tokenizer.model_type={model_type!r} is unknown; fix: choose one of {', '.join(MODEL_TYPES)}"
        )
    if not isinstance(vocab_size, int) or vocab_size <= EOS_ID + 1:
        raise ConfigError(f"data.tokenizer.vocab_size={vocab_size!r}; fix: use an integer above {EOS_ID + 1}")
    if not 0.0 < character_coverage <= 1.0:
        raise ConfigError(f"data.tokenizer.character_coverage={character_coverage!r}; fix: use a value in (0, 1]")
    if not sentences:
        raise DataError("no sentences to train the tokenizer on; fix: check that the training files are not empty")
    settings = {
        "vocab_size": vocab_size,
        "model_type": model_type,
        "character_coverage": float(character_coverage),
        "sentencepiece": spm.__version__,
    }
    cache_file = Path(cache_dir).expanduser() / f"{_cache_key(sentences, settings)}.model" if cache_dir else None
    if cache_file is not None and cache_file.is_file():
        try:
            tokenizer = SentencePieceTokenizer(cache_file.read_bytes())
        except (DataError, OSError) as e:
            log.warning("ignoring unreadable cached tokenizer %s (%s); training again", cache_file, e)
        else:
            log.info("loaded cached sentencepiece model %s", cache_file)
            return tokenizer

    log.info(
        "training a %s sentencepiece model (vocab_size=%d) on %d sentences", model_type, vocab_size, len(sentences)
    )
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=model,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            input_sentence_size=0,  # use every sentence: sampling would make the model depend on a random seed
            shuffle_input_sentence=False,
            num_threads=_num_threads(),
            minloglevel=2,  # sentencepiece's INFO output would flood the training log; errors raise anyway
        )
    except RuntimeError as e:
        message = str(e)
        if (largest := re.search(r"<=\s*(\d+)", message)) and "too high" in message:
            raise ConfigError(
                f"data.tokenizer.vocab_size={vocab_size} is too large for the tokenizer's training text "
                f"({len(sentences)} sentences): sentencepiece allows at most {largest.group(1)}; fix: lower "
                f"data.tokenizer.vocab_size to {largest.group(1)} or less"
            ) from None
        if needed := re.search(r"smaller than required_chars\. \d+ vs (\d+)", message):
            raise ConfigError(
                f"data.tokenizer.vocab_size={vocab_size} is too small: the training text has {needed.group(1)} "
                f"distinct characters and special pieces, each a piece of its own; fix: raise data.tokenizer.vocab_size "
                f"to {needed.group(1)} or more, or lower data.tokenizer.character_coverage"
            ) from None
        raise ConfigError(
            f"sentencepiece training failed: {message}; fix: check the data.tokenizer settings "
            f"(e.g. lower data.tokenizer.vocab_size)"
        ) from None
    tokenizer = SentencePieceTokenizer(model.getvalue())
    if cache_file is not None:
        try:
            atomic_write_bytes(cache_file, tokenizer.model_bytes)
        except OSError as e:
            log.warning("could not cache the tokenizer at %s (%s); set data.tokenizer.cache_dir", cache_file, e)
        else:
            log.info("cached sentencepiece model at %s", cache_file)
    return tokenizer


def _cache_key(sentences: Iterable[str], settings: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for sentence in sentences:
        # The separator keeps ["ab"] and ["a", "b"] apart (corpus lines never contain "\n").
        digest.update(b"\n" + sentence.encode("utf-8"))
    return digest.hexdigest()


@dataclass(frozen=True)
class Tokenizers:
    """The source and target tokenizers; ``joint`` means one shared sentencepiece model (then ``src is tgt`` unless
    each side keeps its own vocabulary of the pieces it uses)."""

    src: SentencePieceTokenizer
    tgt: SentencePieceTokenizer
    joint: bool

    def state_dict(self) -> dict[str, Any]:
        """Plain-python state for a checkpoint: ``{"version": int, "joint": bool, "src": bytes, "tgt": bytes,
        "src_vocabulary": list[int] | None, "tgt_vocabulary": list[int] | None}``.

        With a joint model "src" and "tgt" are the same bytes object, which pickle (so ``torch.save``) stores once.
        """
        return {
            "version": _STATE_VERSION,
            "joint": self.joint,
            "src": self.src.model_bytes,
            "tgt": self.tgt.model_bytes,
            "src_vocabulary": self.src.vocabulary,
            "tgt_vocabulary": self.tgt.vocabulary,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Tokenizers:
        """Inverse of :meth:`state_dict`.

        Raises:
            DataError: the state is not one written by :meth:`state_dict`, or a model in it is invalid.
        """
        if not isinstance(state, dict) or not {"joint", "src", "tgt"} <= state.keys():
            found = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise DataError(
                f"tokenizer state needs the keys joint, src and tgt, found {found}; fix: use a checkpoint written "
                f"by seq2seq-lit"
            )
        src = SentencePieceTokenizer(state["src"], state.get("src_vocabulary"))
        joint = bool(state["joint"])
        if joint and state.get("src_vocabulary") == state.get("tgt_vocabulary"):
            return cls(src=src, tgt=src, joint=True)
        return cls(src=src, tgt=SentencePieceTokenizer(state["tgt"], state.get("tgt_vocabulary")), joint=joint)


def sample_positions(total: int, size: int) -> np.ndarray | None:
    """Sorted positions of the ``size`` sentences out of ``total`` that a tokenizer trains on, drawn without
    replacement with the fixed seed :data:`SAMPLE_SEED` (so the model is reproducible); None when ``total <= size``:
    then every sentence is used, in corpus order.

    Raises:
        ConfigError: ``size`` is not a positive integer.
    """
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ConfigError(f"data.tokenizer.input_sentence_size={size!r}; fix: use a positive integer (e.g. 1000000)")
    if total <= size:
        return None
    return np.sort(np.random.default_rng(SAMPLE_SEED).choice(total, size, replace=False))


def build_tokenizers(
    train_src_lines: Sequence[str],
    train_tgt_lines: Sequence[str],
    joint: bool = True,
    per_side_vocab: bool = True,
    vocab_size: int = 8000,
    model_type: str = "bpe",
    character_coverage: float = 1.0,
    cache_dir: str | os.PathLike[str] | None = DEFAULT_CACHE_DIR,
    input_sentence_size: int = DEFAULT_INPUT_SENTENCE_SIZE,
) -> Tokenizers:
    """Train (or load from the cache) the tokenizers of a corpus from its training lines.

    ``joint``: one model of ``vocab_size`` pieces on source and target lines together (source lines first), used for
    both sides; otherwise one model of ``vocab_size`` pieces per side. ``per_side_vocab``: with a joint model, each side
    keeps only the pieces its own training lines use (see :meth:`SentencePieceTokenizer.restricted_to`).
    ``input_sentence_size``: the most sentences a model trains on; from more, that many are drawn
    (:func:`sample_positions`; for a joint model out of the source and target lines together). Other arguments and
    errors: see :func:`train_sentencepiece`.
    """
    settings: dict[str, Any] = dict(
        vocab_size=vocab_size, model_type=model_type, character_coverage=character_coverage, cache_dir=cache_dir
    )
    if joint:
        shared = train_sentencepiece(_sample([*train_src_lines, *train_tgt_lines], input_sentence_size), **settings)
        if per_side_vocab:
            src, tgt = shared.restricted_to(train_src_lines), shared.restricted_to(train_tgt_lines)
            log.info("per-side vocabularies of the joint model: %d source, %d target pieces", src.vocab_size, tgt.vocab_size)
            return Tokenizers(src=src, tgt=tgt, joint=True)
        return Tokenizers(src=shared, tgt=shared, joint=True)
    return Tokenizers(
        src=train_sentencepiece(_sample(train_src_lines, input_sentence_size), **settings),
        tgt=train_sentencepiece(_sample(train_tgt_lines, input_sentence_size), **settings),
        joint=False,
    )


def _sample(sentences: Sequence[str], size: int) -> Sequence[str]:
    positions = sample_positions(len(sentences), size)
    return sentences if positions is None else [sentences[i] for i in positions.tolist()]
