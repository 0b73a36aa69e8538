"""The Lightning data module: reads a corpus, trains or loads its tokenizers, and serves bucketed batches."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from functools import partial
from typing import Any

import lightning as L
import torch
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

from seq2seq_lit.data.batching import Batch, BucketBatchSampler, TranslationDataset, collate
from seq2seq_lit.data.corpus import Corpus, ParallelText, PathLike, check_split, open_corpus_file, read_parallel
from seq2seq_lit.data.store import CorpusStore, open_store
from seq2seq_lit.data.tokenizer import (
    BOS_ID,
    DEFAULT_CACHE_DIR,
    DEFAULT_INPUT_SENTENCE_SIZE,
    EOS_ID,
    PAD_ID,
    Tokenizers,
    sample_positions,
)
from seq2seq_lit.errors import ConfigError
from seq2seq_lit.utils.lightning_internals import replaces_samplers

log = logging.getLogger(__name__)

TOKENIZER_DEFAULTS: dict[str, Any] = {
    "joint": True,
    "per_side_vocab": True,
    "vocab_size": 8000,
    "model_type": "bpe",
    "character_coverage": 1.0,
    "cache_dir": DEFAULT_CACHE_DIR,
    "input_sentence_size": DEFAULT_INPUT_SENTENCE_SIZE,
}
# Splits that setup(stage) encodes eagerly; any other split is read on first use.
_STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}


def make_dataloader(
    dataset: TranslationDataset,
    batch_sampler: Iterable[list[int]],
    num_workers: int = 0,
    loader_cls: type[DataLoader] = DataLoader,
    pad_to_multiple: int | None = None,
    **kwargs: Any,
) -> DataLoader:
    """A DataLoader (of class ``loader_cls``, with further ``kwargs``) of :class:`~seq2seq_lit.data.batching.Batch`
    objects over ``dataset`` in the sampler's order, padded as :func:`~seq2seq_lit.data.batching.collate` says."""
    return loader_cls(
        dataset,
        batch_sampler=batch_sampler,
        collate_fn=partial(collate, pad_to_multiple=pad_to_multiple) if pad_to_multiple else collate,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=False,
        **kwargs,
    )


class ResumableDataLoader(DataLoader):
    """A training DataLoader over a :class:`~seq2seq_lit.data.batching.BucketBatchSampler` that resumes mid-epoch.

    Lightning stores :meth:`state_dict` of the training DataLoader in every checkpoint and, when a fit resumes, calls
    :meth:`load_state_dict` on the new run's DataLoader before iterating it; so a run resumed from a checkpoint written
    in the middle of an epoch trains on the rest of that epoch's batches, in the same order, as the uninterrupted run
    would have. The state is the epoch and the number of batches this loader has handed out in it, counted where they
    leave the loader (the sampler runs ahead of training by the batches that worker processes prefetch).

    Iterating starts at the first batch requested rather than at ``iter()``: when a fit starts, Lightning creates the
    iterator before it sets the sampler's epoch, and the epoch decides the order. Pass a ``generator``, so that creating
    an iterator (which draws the workers' base seed) leaves the global random state alone; a resumed run restores that
    state from the checkpoint (:class:`~seq2seq_lit.callbacks.ResumeCheckpoint`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.batch_sampler, BucketBatchSampler):
            raise TypeError("ResumableDataLoader needs a BucketBatchSampler as batch_sampler")
        self._position = (self.batch_sampler.epoch, 0)  # (epoch, batches handed out in it)

    def __iter__(self) -> Iterator[Batch]:
        return self._batches()

    def _batches(self) -> Iterator[Batch]:
        iterator = super().__iter__()  # runs at the first next(), after Lightning's set_epoch
        epoch, start = self.batch_sampler.last_iteration
        self._position = (epoch, start)
        for batch in iterator:
            self._position = (epoch, self._position[1] + 1)
            yield batch

    def state_dict(self) -> dict[str, int]:
        """``{"epoch": e, "batches": n}``: the first ``n`` batches of epoch ``e`` have been handed out."""
        return {"epoch": self._position[0], "batches": self._position[1]}

    def load_state_dict(self, state_dict: Mapping[str, int]) -> None:
        """Make the next iteration of epoch ``state_dict["epoch"]`` skip the batches handed out before."""
        epoch, batches = int(state_dict["epoch"]), int(state_dict["batches"])
        self.batch_sampler.resume_at(epoch, batches)
        self._position = (epoch, batches)


def eval_dataloader(
    dataset: TranslationDataset, batch_size: int, num_workers: int = 0, num_replicas: int = 1, rank: int = 0
) -> DataLoader:
    """Batches sorted by length (least padding, fixed order); ``Batch.indices`` restores the dataset order.

    With ``num_replicas`` > 1 (data-parallel evaluation) this process gets every ``num_replicas``-th sentence of the
    sorted order from the ``rank``-th on: each sentence is evaluated by exactly one process, none twice.

    E.g. to translate arbitrary lines:
    ``eval_dataloader(TranslationDataset(tokenizers.src.encode_batch(lines)), batch_size=200)``.
    """
    sampler = BucketBatchSampler(dataset.lengths, batch_size, shuffle=False, num_replicas=num_replicas, rank=rank)
    return make_dataloader(dataset, sampler, num_workers)


class TranslationDataModule(L.LightningDataModule):
    """Train/val/test data of a parallel corpus, as batches of :class:`~seq2seq_lit.data.batching.Batch`.

    The tokenizers are trained on the training split only (or loaded from the tokenizer cache, or set beforehand via
    :attr:`tokenizers`, e.g. from a checkpoint). Training pairs with an empty side or a side of more than
    ``max_length`` pieces are dropped (counts in :attr:`num_filtered`); val and test are never filtered.

    The encoded splits live in a corpus store (:mod:`seq2seq_lit.data.store`) under ``store_dir``,
    built on first use (:meth:`prepare_data`, or :meth:`setup` when it is missing) and opened in seconds by every
    later run and every process; batches are read from it, so memory does not grow with the corpus.

    Args:
        corpus: an instantiated corpus (:class:`~seq2seq_lit.data.corpus.ParallelText`,
            :class:`~seq2seq_lit.data.multi30k.Multi30k`).
        src_lang, tgt_lang: language codes; must match the corpus' ``src_lang``/``tgt_lang`` where it has them.
        tokenizer: settings of :func:`~seq2seq_lit.data.tokenizer.build_tokenizers` (joint, per_side_vocab, vocab_size,
            model_type, character_coverage, cache_dir, input_sentence_size); missing keys take
            :data:`TOKENIZER_DEFAULTS`.
        batch_size: training pairs per batch; with ``batch_tokens``, the most pairs per batch.
        batch_tokens: a token-based training batch size: pairs per batch such that pairs x longest (source or
            target, in pieces without BOS/EOS) stays within it; None: ``batch_size`` pairs per batch.
        eval_batch_size: pairs per validation/test batch.
        pad_to_multiple: pad each training batch's source and target length up to a multiple of this (None: to its
            longest sentence), so that a compiled training step (``model.compile``) meets a few fixed shapes.
        max_length: longest training sentence kept, in pieces (BOS/EOS not counted); None keeps all.
        num_workers: DataLoader worker processes (persistent when > 0).
        seed: seed of the training batch order (epoch e uses ``seed + e``).
        store_dir: folder of corpus stores ("~" is expanded); None: a temporary folder, removed with the data module.
        store_hash_files: find the store by the sha256 of each whole corpus file instead of its size, modification
            time and sampled MiBs (notices a file changed in place with both kept; reads every file at each start).

    Raises:
        ConfigError: a setting is out of range, a tokenizer key is unknown, or the languages differ from the corpus'.
    """

    def __init__(
        self,
        corpus: Corpus,
        src_lang: str = "de",
        tgt_lang: str = "en",
        tokenizer: Mapping[str, Any] | None = None,
        batch_size: int = 64,
        eval_batch_size: int = 200,
        max_length: int | None = 100,
        num_workers: int = 0,
        seed: int = 0,
        batch_tokens: int | None = None,
        store_dir: PathLike | None = None,
        store_hash_files: bool = False,
        pad_to_multiple: int | None = None,
    ) -> None:
        super().__init__()
        for name, value, minimum in (
            ("batch_size", batch_size, 1),
            ("batch_tokens", 1 if batch_tokens is None else batch_tokens, 1),
            ("pad_to_multiple", 1 if pad_to_multiple is None else pad_to_multiple, 1),
            ("eval_batch_size", eval_batch_size, 1),
            ("max_length", 1 if max_length is None else max_length, 1),
            ("num_workers", num_workers, 0),
        ):
            if not isinstance(value, int) or value < minimum:
                raise ConfigError(f"data.{name}={value!r}; fix: use an integer of at least {minimum}")
        tokenizer = dict(tokenizer or {})
        sample_positions(0, tokenizer.get("input_sentence_size", DEFAULT_INPUT_SENTENCE_SIZE))  # checks the setting
        if unknown := sorted(tokenizer.keys() - TOKENIZER_DEFAULTS.keys()):
            raise ConfigError(
                f"unknown data.tokenizer setting(s) {', '.join(unknown)}; fix: use only {', '.join(TOKENIZER_DEFAULTS)}"
            )
        for name, value in (("src_lang", src_lang), ("tgt_lang", tgt_lang)):
            corpus_value = getattr(corpus, name, None)
            if corpus_value is not None and corpus_value != value:
                raise ConfigError(
                    f"data.{name}={value!r} but the corpus has {name}={corpus_value!r}; fix: set the same language "
                    f"for the data module and the corpus"
                )
        self.corpus = corpus
        self.src_lang = src_lang
        self.tgt_lang = tgt_lang
        self.tokenizer_settings = {**TOKENIZER_DEFAULTS, **tokenizer}
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        self.pad_to_multiple = pad_to_multiple
        self.eval_batch_size = eval_batch_size
        self.max_length = max_length
        self.num_workers = num_workers
        self.seed = seed
        self.num_filtered: dict[str, int] = {"empty": 0, "too_long": 0}
        """Training pairs dropped by setup: with an empty side, and with a side longer than max_length."""
        self._tokenizers: Tokenizers | None = None  # given ones (a checkpoint's); else the store's
        if store_dir is None:
            self._store_tmp: tempfile.TemporaryDirectory[str] | None = tempfile.TemporaryDirectory(prefix="s2s-store-")
            store_dir = self._store_tmp.name
        self.store_dir = store_dir
        self.store_hash_files = bool(store_hash_files)
        self._store: CorpusStore | None = None
        self._lines: dict[str, tuple[list[str], list[str]]] = {}
        self._datasets: dict[str, TranslationDataset] = {}
        self._train_sampler: BucketBatchSampler | None = None

    @classmethod
    def from_files(
        cls,
        train_src: PathLike,
        train_tgt: PathLike,
        val_src: PathLike,
        val_tgt: PathLike,
        test_src: PathLike | None = None,
        test_tgt: PathLike | None = None,
        **kwargs: Any,
    ) -> TranslationDataModule:
        """A data module over a :class:`~seq2seq_lit.data.corpus.ParallelText` of these files (flat Hydra config).

        ``kwargs`` are the other constructor arguments. Raises: as :class:`ParallelText` and the constructor.
        """
        return cls(ParallelText(train_src, train_tgt, val_src, val_tgt, test_src, test_tgt), **kwargs)

    # -- Lightning hooks ------------------------------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Download the corpus if needed and build its corpus store unless it exists (Lightning runs this on one
        process per node; a file lock makes any other process that gets here wait for the build, then open it).

        Raises:
            as :meth:`setup`.
        """
        self.corpus.prepare()
        self.store()

    def setup(self, stage: str | None = None) -> None:
        """Read the stage's splits and the tokenizers; idempotent (work already done is not repeated).

        "fit" opens train and val, "validate" val, "test"/"predict" test, None train and val; other splits are
        opened on first use. The corpus store is opened, or built if missing (:meth:`prepare_data` normally has).

        Raises:
            DataError: a corpus file is missing, empty, not UTF-8 or misaligned, or filtering left no training pair.
            ConfigError: bad tokenizer settings (see :func:`~seq2seq_lit.data.tokenizer.train_sentencepiece`).
        """
        for split in _STAGE_SPLITS.get(stage or "fit", ("train", "val")):
            self._dataset(split)

    # -- tokenizers -----------------------------------------------------------------------------------------------

    @property
    def tokenizers(self) -> Tokenizers:
        """Source and target tokenizers; trained (or loaded from the cache) on the training split on first access.

        Assign a :class:`~seq2seq_lit.data.tokenizer.Tokenizers` before :meth:`setup` to use given ones (e.g.
        ``Tokenizers.from_state_dict`` of a checkpoint) instead.
        """
        return self._tokenizers if self._tokenizers is not None else self.store().tokenizers

    @tokenizers.setter
    def tokenizers(self, tokenizers: Tokenizers) -> None:
        if self._datasets:
            raise RuntimeError("set the tokenizers before setup(): splits were already encoded with other ones")
        self._tokenizers = tokenizers
        self._store = None  # the store of these tokenizers is another one

    @property
    def src_vocab_size(self) -> int:
        """Size of the source vocabulary (specials included)."""
        return self.tokenizers.src.vocab_size

    @property
    def tgt_vocab_size(self) -> int:
        """Size of the target vocabulary (specials included)."""
        return self.tokenizers.tgt.vocab_size

    @property
    def pad_id(self) -> int:
        return PAD_ID

    @property
    def bos_id(self) -> int:
        return BOS_ID

    @property
    def eos_id(self) -> int:
        return EOS_ID

    def store(self) -> CorpusStore:
        """The corpus store of this corpus, tokenizer and filter settings (opened once; built if missing).

        Raises:
            as :meth:`setup`; OSError: ``store_dir`` cannot be written.
        """
        if self._store is None:
            self._store = open_store(
                self.corpus, self.tokenizer_settings, self.max_length, self.store_dir, tokenizers=self._tokenizers,
                hash_files=self.store_hash_files,
            )
            self.num_filtered = self._store.num_filtered
            if "train" in self._store.splits:
                log.info(
                    "dropped %d of %d training pairs (%d with an empty side, %d with a side longer than max_length=%s "
                    "pieces); corpus store %s",
                    sum(self.num_filtered.values()), self._store.manifest["splits"]["train"]["corpus_pairs"],
                    self.num_filtered["empty"], self.num_filtered["too_long"], self.max_length, self._store.path,
                )
        return self._store

    # -- raw text -------------------------------------------------------------------------------------------------

    def sources(self, split: str) -> list[str]:
        """Raw source lines of ``split`` in corpus order (unfiltered, also for train).

        Raises:
            ConfigError: unknown split. DataError: unreadable files (see :func:`read_parallel`).
        """
        return self._read(split)[0]

    def references(self, split: str) -> list[str]:
        """Raw target lines of ``split`` in corpus order (unfiltered, also for train); errors as :meth:`sources`."""
        return self._read(split)[1]

    # -- dataloaders ----------------------------------------------------------------------------------------------

    def train_dataloader(self) -> ResumableDataLoader:
        """Shuffled, length-bucketed training batches of ``batch_size`` pairs (or ``batch_tokens``); a new order each
        epoch.

        The sampler is created once and advances its epoch each time iteration starts (Lightning also sets it to the
        trainer's epoch), so epoch e's order depends only on ``seed + e``; the loader resumes mid-epoch from a
        checkpoint (:class:`ResumableDataLoader`).

        Under data-parallel training each process gets its own share of every epoch's batches, the same number on
        every process (:class:`~seq2seq_lit.data.batching.BucketBatchSampler`); the trainer needs
        ``use_distributed_sampler=False`` (``trainer=ddp`` sets it) so that Lightning leaves the sampler alone.
        """
        dataset = self._dataset("train")
        num_replicas, rank = self._replicas()
        sampler = self._train_sampler
        if sampler is None or (sampler.num_replicas, sampler.rank) != (num_replicas, rank):
            self._train_sampler = BucketBatchSampler(
                dataset.lengths,
                self.batch_size,
                shuffle=True,
                seed=self.seed,
                num_replicas=num_replicas,
                rank=rank,
                max_tokens=self.batch_tokens,
            )
        generator = torch.Generator().manual_seed(self.seed)
        return make_dataloader(
            dataset, self._train_sampler, self.num_workers, ResumableDataLoader, self.pad_to_multiple, generator=generator
        )

    def val_dataloader(self) -> DataLoader:
        """Validation batches of ``eval_batch_size``, sorted by length; ``Batch.indices`` gives corpus positions."""
        return self.dataloader("val")

    def test_dataloader(self) -> DataLoader:
        """Test batches of ``eval_batch_size``, sorted by length; ``Batch.indices`` gives corpus positions."""
        return self.dataloader("test")

    def predict_dataloader(self) -> DataLoader:
        """Test batches of ``eval_batch_size`` consecutive sentences, in corpus order, so that the outputs of
        ``trainer.predict`` (one list per batch) concatenate to the split's translations in order."""
        dataset = self._dataset("test")
        batches = BatchSampler(SequentialSampler(range(len(dataset))), self.eval_batch_size, drop_last=False)
        return make_dataloader(dataset, batches, self.num_workers)

    def dataloader(self, split: str) -> DataLoader:
        """:meth:`train_dataloader` for "train", else the sorted evaluation loader of "val" or "test".

        Raises:
            ConfigError: unknown split.
        """
        if split == "train":
            return self.train_dataloader()
        num_replicas, rank = self._replicas()
        return eval_dataloader(self._dataset(split), self.eval_batch_size, self.num_workers, num_replicas, rank)

    def batch_of(self, split: str, indices: Iterable[int]) -> Batch:
        """One batch of the examples at positions ``indices`` of ``split``'s dataset (e.g. fixed sentences to plot);
        for val and test, which are never filtered, these are the corpus positions.

        Raises:
            ConfigError: unknown split. IndexError: a position outside the split.
        """
        dataset = self._dataset(split)
        return collate([dataset[i] for i in indices])

    # -- internals ------------------------------------------------------------------------------------------------

    def _replicas(self) -> tuple[int, int]:
        """(world size, global rank) of the attached trainer; (1, 0) without one.

        Raises:
            ConfigError: data-parallel training with Lightning's sampler replacement on (it would wrap the bucketed
                batches in a ``DistributedSampler``, which fails, and would repeat evaluation sentences).
        """
        trainer = self.trainer
        if trainer is None:
            return 1, 0
        if trainer.world_size > 1 and replaces_samplers(trainer):
            raise ConfigError(
                "data-parallel training needs trainer.use_distributed_sampler=false: the data module shards its "
                "length-bucketed batches itself. Fix: use trainer=ddp, or add +trainer.use_distributed_sampler=false"
            )
        return trainer.world_size, trainer.global_rank

    def _read(self, split: str) -> tuple[list[str], list[str]]:
        check_split(split)
        if split not in self._lines:
            self._lines[split] = read_parallel(*self.corpus.paths(split))
        return self._lines[split]

    def _dataset(self, split: str) -> TranslationDataset:
        check_split(split)
        if split not in self._datasets:
            paths = self.corpus.paths(split)  # the corpus' error for a split it does not have (no test files)
            store = self.store()
            if split not in store.splits:  # its files were missing when the store was opened
                for path in paths:  # the reader's error
                    open_corpus_file(path).close()
                self._store = None  # they are there now: open the store that has them
                store = self.store()
            self._datasets[split] = store.dataset(split)
        return self._datasets[split]
