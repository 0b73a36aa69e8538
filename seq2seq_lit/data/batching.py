"""Batches of padded id tensors, the dataset of encoded sentence pairs, and length-bucketing batch sampler.

Shapes use B (batch size), S (source length) and T (target length), all including the added BOS/EOS.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from seq2seq_lit.data.arrays import FileArray, TokenArrays, lengths_of
from seq2seq_lit.data.tokenizer import BOS_ID, EOS_ID, PAD_ID

Example = tuple[int, Sequence[int], Sequence[int] | None]
"""(index in its split, source piece ids, target piece ids or None), ids without BOS/EOS."""


@dataclass(eq=False)  # comparing tensors field by field would raise: identity is the useful equality
class Batch:
    """A batch of sentence pairs, padded with PAD_ID; all tensors are long.

    Attributes:
        src: (B, S) source pieces followed by EOS (so an empty sentence has length 1).
        src_lengths: (B,) number of non-pad tokens in each ``src`` row (EOS included).
        tgt_in: (B, T) BOS followed by the target pieces (decoder input), or None for inference-only batches.
        tgt_out: (B, T) the target pieces followed by EOS (what the decoder predicts), or None.
        indices: (B,) position of each pair in its split, to restore corpus order.
    """

    src: Tensor
    src_lengths: Tensor
    tgt_in: Tensor | None
    tgt_out: Tensor | None
    indices: Tensor

    def __len__(self) -> int:
        """B."""
        return self.src.size(0)

    @property
    def num_tgt_tokens(self) -> int:
        """Number of non-pad tokens in ``tgt_out`` (0 without targets); synchronizes with the device on a GPU."""
        return 0 if self.tgt_out is None else int((self.tgt_out != PAD_ID).sum())

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """A copy with the token tensors on ``device`` (Lightning calls this to move batches); ``src_lengths`` and
        ``indices`` stay on the host, where they are read (packing the encoder's input, the search's length cap,
        corpus positions): on a GPU, reading them back from the device would wait for its queue of kernels."""
        return dataclasses.replace(
            self,
            **{
                f.name: value.to(device, non_blocking=non_blocking)
                for f in dataclasses.fields(self)
                if (value := getattr(self, f.name)) is not None and f.name not in HOST_FIELDS
            },
        )


HOST_FIELDS = ("src_lengths", "indices")  # Batch fields that Batch.to leaves on the host


def _pad(rows: Sequence[Sequence[int]], bos: bool, eos: bool, multiple: int = 1) -> tuple[Tensor, Tensor]:
    """(B, L) tensor of [BOS] + row + [EOS] per row (each part optional), right-padded with PAD_ID to L, the longest
    row rounded up to a multiple of ``multiple``; (B,) lengths."""
    prefix, suffix = (BOS_ID,) if bos else (), (EOS_ID,) if eos else ()
    lengths = torch.tensor([len(row) for row in rows], dtype=torch.long) + len(prefix) + len(suffix)
    ids = chain.from_iterable(part for row in rows for part in (prefix, row, suffix))
    flat = torch.tensor(list(ids), dtype=torch.long)
    width = -(-int(lengths.max()) // multiple) * multiple
    padded = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
    # The row-major order of the mask matches the order of the concatenated ids.
    padded[torch.arange(padded.size(1)) < lengths[:, None]] = flat
    return padded, lengths


def collate(examples: Sequence[Example], pad_to_multiple: int | None = None) -> Batch:
    """Batch ``(index, src_ids, tgt_ids_or_None)`` examples; adds EOS to sources, BOS/EOS to targets.

    ``pad_to_multiple``: pad S and T up to a multiple of it (None: to the longest row). A compiled training step
    (``model.compile``) then sees a few fixed shapes and reuses its graphs; the extra positions are padding, which
    the encoder packs away, the attention masks and the loss ignores.

    Raises:
        ValueError: ``examples`` is empty, or only some examples have targets.
    """
    if not examples:
        raise ValueError("cannot collate an empty list of examples")
    multiple = pad_to_multiple or 1
    indices, src_rows, tgt_rows = zip(*examples)
    src, src_lengths = _pad(src_rows, bos=False, eos=True, multiple=multiple)
    has_tgt = [row is not None for row in tgt_rows]
    if all(has_tgt):
        tgt_in, _ = _pad(tgt_rows, bos=True, eos=False, multiple=multiple)
        tgt_out, _ = _pad(tgt_rows, bos=False, eos=True, multiple=multiple)
    elif not any(has_tgt):
        tgt_in = tgt_out = None
    else:
        raise ValueError("either all examples of a batch have a target or none has")
    return Batch(src, src_lengths, tgt_in, tgt_out, torch.tensor(indices, dtype=torch.long))


class TranslationDataset(Dataset[Example]):
    """Encoded sentence pairs (or sources only); item i is ``(indices[i], src[i], tgt[i] or None)``.

    Args:
        src: piece ids of each source sentence, without EOS: lists, or a file-backed
            :class:`~seq2seq_lit.data.arrays.TokenArrays` (kept as it is, not copied).
        tgt: piece ids of each target sentence, without BOS/EOS (lists or ``TokenArrays``), or None for sources only.
        indices: position of each pair in its split (defaults to 0..N-1), which differs from the dataset position after
            filtering; a :class:`~seq2seq_lit.data.arrays.FileArray` is kept as it is, read value by value.

    Attributes:
        src_lengths, tgt_lengths: (N,) int32 arrays of piece counts per item (``tgt_lengths`` is None without
            targets).

    Raises:
        ValueError: the sequences have different lengths.
    """

    def __init__(
        self,
        src: Sequence[Sequence[int]],
        tgt: Sequence[Sequence[int]] | None = None,
        indices: Sequence[int] | None = None,
    ) -> None:
        self.src = _as_sentences(src)
        self.tgt = _as_sentences(tgt) if tgt is not None else None
        self.indices = np.arange(len(self.src)) if indices is None else _as_indices(indices)
        if len(self.indices) != len(self.src) or (self.tgt is not None and len(self.tgt) != len(self.src)):
            raise ValueError("src, tgt and indices must have the same length")
        self.src_lengths = lengths_of(self.src)
        self.tgt_lengths = lengths_of(self.tgt) if self.tgt is not None else None

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, i: int) -> Example:
        return int(self.indices[i]), self.src[i], self.tgt[i] if self.tgt is not None else None

    @property
    def lengths(self) -> np.ndarray:
        """(N,) length of each item for bucketing: the longer of source and target."""
        if self.tgt_lengths is None:
            return self.src_lengths.copy()
        return np.maximum(self.src_lengths, self.tgt_lengths)


def _as_indices(indices: Sequence[int]) -> Sequence[int]:
    return indices if isinstance(indices, FileArray) else np.asarray(indices, dtype=np.int64)


def _as_sentences(sentences: Sequence[Sequence[int]]) -> Sequence[Sequence[int]]:
    return sentences if isinstance(sentences, TokenArrays) else list(sentences)


class BucketBatchSampler:
    """Yields lists of dataset positions whose items have similar lengths, each position once per epoch.

    With ``shuffle``, each epoch permutes the positions (a ``torch.Generator`` seeded with ``seed + epoch``), sorts
    each chunk of ``batch_size * bucket_factor`` positions by length, cuts the chunks into batches and permutes the
    batch order. Without ``shuffle``, all positions are sorted by length (ties by position) and cut into batches:
    least padding and a fixed order, for evaluation.

    The epoch advances by one each time an iteration starts, so reusing one DataLoader gives a new order every
    epoch. Lightning also calls :meth:`set_epoch` with the trainer's epoch before each epoch (through the
    ``sampler`` attribute, which is where it looks), so resuming from a checkpoint continues the same sequence.
    :meth:`resume_at` makes the next iteration of a given epoch start after the batches a run had already trained
    on (see :class:`~seq2seq_lit.data.datamodule.ResumableDataLoader`).

    Under data-parallel training (``num_replicas`` > 1, e.g. DDP), every process builds the same global batches
    (same seed) and keeps its own share, so no sentence is seen twice per epoch and none is padded in:

    - shuffled (training): global batch ``i`` goes to process ``i % num_replicas``, and every process keeps
      ``len(global batches) // num_replicas`` of them (the few left over are dropped for this epoch; the shuffle
      changes which), so all processes run the same number of steps and DDP's gradient all-reduce never waits for
      a process that has run out of batches;
    - sorted (evaluation): process ``r`` takes the sentences at positions ``r, r + num_replicas, ...`` of the
      length-sorted order, each sentence exactly once across processes (unlike ``DistributedSampler``, nothing is
      repeated to even out the shares; the counts differ by at most one sentence), cut into batches.

    With ``max_tokens`` (a token-based batch size, as fairseq's ``--max-tokens`` or OpenNMT-py's ``batch_type:
    tokens``), each sorted run is cut into batches of as many items as keep ``items x longest item`` (the padded
    tokens of the batch's longer side) within ``max_tokens``, and at most ``batch_size`` items: short sentences come
    in large batches, long ones in small batches, so the work per step is about even. An item longer than
    ``max_tokens`` gets a batch of its own (the data module's ``max_length`` filter normally prevents that).

    Args:
        lengths: length of each item.
        batch_size: items per batch (the last batch may be smaller unless ``drop_last``); with ``max_tokens``, the
            most items per batch.
        shuffle: random order for training, else sorted.
        seed: base seed of the per-epoch generator.
        bucket_factor: batches per sorted chunk; larger means less padding but less randomness.
        drop_last: drop the final incomplete batch.
        num_replicas: number of data-parallel processes sharing the data (world size).
        rank: this process' index among them, 0 to ``num_replicas - 1``.
        max_tokens: padded tokens per batch (see above); None cuts batches of ``batch_size`` items. ``drop_last``
            does not apply to token-based batches.

    Raises:
        ValueError: ``batch_size``, ``bucket_factor``, ``num_replicas`` or ``max_tokens`` is below 1, or ``rank`` is
            out of range.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        bucket_factor: int = 100,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
        max_tokens: int | None = None,
    ) -> None:
        if batch_size < 1 or bucket_factor < 1:
            raise ValueError(f"batch_size ({batch_size}) and bucket_factor ({bucket_factor}) must be at least 1")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens ({max_tokens}) must be at least 1")
        self.max_tokens = max_tokens
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"rank ({rank}) must be in [0, num_replicas) and num_replicas ({num_replicas}) at least 1")
        self.num_replicas = num_replicas
        self.rank = rank
        self.lengths = torch.as_tensor(lengths, dtype=torch.int32)  # lengths fit; half the memory of int64
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.bucket_factor = bucket_factor
        self.drop_last = drop_last
        self.epoch = 0
        self.sampler = _EpochHook(self)
        self.last_iteration: tuple[int, int] | None = None
        """(epoch, first batch) of the latest iteration started."""
        self._resume: tuple[int, int] | None = None
        self._cached: tuple[int, list[Tensor]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` for the next iteration."""
        self.epoch = epoch

    def resume_at(self, epoch: int, start: int) -> None:
        """Let the next iteration of ``epoch`` skip its first ``start`` batches (once); an iteration of another epoch
        is not affected, and cancels this."""
        self.epoch, self._resume = epoch, (epoch, start)

    def __len__(self) -> int:
        """Batches per epoch of this process."""
        if self.max_tokens is not None:  # depends on how the lengths fall into batches: cut them
            return len(self._batches(self.epoch))
        if not self.shuffle:
            n = len(range(self.rank, len(self.lengths), self.num_replicas))
            return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        n = len(self.lengths)
        total = n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        return total // self.num_replicas

    def __iter__(self) -> Iterator[list[int]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        resume, self._resume = self._resume, None
        start = resume[1] if resume is not None and resume[0] == epoch else 0
        self.last_iteration = (epoch, start)
        return (batch.tolist() for batch in self._batches(epoch)[start:])

    def batches(self, epoch: int) -> list[list[int]]:
        """This process' batches of ``epoch``, in order (does not advance the epoch)."""
        return [batch.tolist() for batch in self._batches(epoch)]

    def global_batches(self, epoch: int) -> list[list[int]]:
        """The shuffled batches of ``epoch`` of all processes together, in order; process ``r`` gets every
        ``num_replicas``-th one from the ``r``-th on."""
        return [batch.tolist() for batch in self._global_batches(epoch)]

    def _batches(self, epoch: int) -> list[Tensor]:
        """:meth:`batches` as views of one tensor of positions (a list per batch is made only when it is used); the
        latest epoch's are kept, as ``len()`` of token-based batches needs them too."""
        if self._cached is not None and self._cached[0] == epoch:
            return self._cached[1]
        if not self.shuffle:
            order = torch.argsort(self.lengths, stable=True)
            batches = self._cut(order[self.rank :: self.num_replicas])
        else:
            batches = self._global_batches(epoch)
            if self.num_replicas > 1:
                per_replica = len(batches) // self.num_replicas
                batches = batches[self.rank :: self.num_replicas][:per_replica]
        self._cached = (epoch, batches)
        return batches

    def _global_batches(self, epoch: int) -> list[Tensor]:
        n = len(self.lengths)
        if n == 0:
            return []
        generator = torch.Generator().manual_seed(self.seed + epoch)
        # int32 positions (the same permutation, and generator state, as int64): these per-pair arrays are what a
        # training process holds per pair beyond the store's files, so half the bytes matter at millions of pairs.
        perm = torch.randperm(n, generator=generator, dtype=torch.int32 if n < 1 << 31 else torch.int64).numpy()
        # Chunks are whole multiples of batch_size, so only the very last batch can be short. One stable sort by
        # (chunk, length), as the key chunk * (longest + 1) + length, sorts every chunk at once, ties in permutation
        # order.
        chunk = self.batch_size * self.bucket_factor
        top = int(self.lengths.max()) + 1
        num_chunks = math.ceil(n / chunk)
        key = np.repeat(np.arange(num_chunks, dtype=_key_dtype(num_chunks * top)) * top, chunk)[:n]
        np.add(key, self.lengths.numpy()[perm], out=key, casting="unsafe")  # lengths are non-negative and below top
        order = _stable_argsort(key)
        del key
        batches = self._cut(torch.from_numpy(perm[order]))
        del order
        return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]

    def _cut(self, order: Tensor) -> list[Tensor]:
        if len(order) == 0:  # split would give one empty batch
            return []
        if self.max_tokens is not None:
            return self._cut_by_tokens(order)
        batches = list(order.split(self.batch_size))
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches

    def _cut_by_tokens(self, order: Tensor) -> list[Tensor]:
        """Consecutive runs of ``order``, each as long as keeps ``items x longest`` within ``max_tokens`` (and items
        within ``batch_size``); an item that alone exceeds ``max_tokens`` makes a batch of its own.

        Each batch is found with array operations on a window of the lengths after its first item, so the work is per
        batch, not per item.
        """
        assert self.max_tokens is not None
        lengths = self.lengths[order].numpy()
        sizes: list[int] = []
        start, window = 0, 64
        while start < len(lengths):
            window = min(window, self.batch_size)
            run = lengths[start : start + window]
            # Item k of the run (k >= 1) joins if (k + 1) x the longest of items 0..k stays within max_tokens.
            over = np.flatnonzero(np.arange(2, len(run) + 1) * np.maximum.accumulate(run)[1:] > self.max_tokens)
            if len(over) == 0 and len(run) == window < self.batch_size:
                window *= 2  # the batch may be longer than the window: look further
                continue
            size = int(over[0]) + 1 if len(over) else len(run)
            sizes.append(size)
            start += size
            window = max(64, 2 * size)
        return list(order.split(sizes))


def _stable_argsort(values: np.ndarray) -> np.ndarray:
    """Stable argsort of non-negative integers; values below 2**16 are sorted as uint16, which numpy radix-sorts."""
    if len(values) and values.dtype != np.uint16 and int(values.max()) < 1 << 16:
        values = values.astype(np.uint16)
    return np.argsort(values, kind="stable")


def _key_dtype(bound: int) -> type[np.unsignedinteger]:
    """The smallest unsigned dtype holding 0 to ``bound`` - 1."""
    return next(t for t in (np.uint16, np.uint32, np.uint64) if bound <= np.iinfo(t).max + 1)


class _EpochHook:
    """Forwards ``set_epoch`` to its batch sampler: Lightning calls ``set_epoch`` on ``batch_sampler.sampler``."""

    def __init__(self, batch_sampler: BucketBatchSampler) -> None:
        self._batch_sampler = batch_sampler

    def set_epoch(self, epoch: int) -> None:
        self._batch_sampler.set_epoch(epoch)
