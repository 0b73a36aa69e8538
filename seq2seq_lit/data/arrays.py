"""Encoded sentences as one flat array of piece ids plus offsets (as fairseq's indexed datasets), read from files:
no Python object per sentence, and processes that read the same files share their pages through the OS page cache.

The files are read value range by value range with ``os.pread`` (:class:`FileArray`), not through memory maps. A
page fault on a map maps the pages around it too (64 KiB of fault-around; with the large page-cache folios of recent
Linux kernels, the whole folio, up to megabytes, whatever ``madvise`` says), so the randomly ordered sentences of a
few training batches had a process map hundreds of megabytes of a 3M-pair corpus, and an epoch all of it. Read with
``pread``, a process's resident memory does not grow with the corpus; the page cache, counted once for all
processes, keeps what was read.

N is the number of sentences, P the number of pieces of all of them together.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

_BLOCK = 1 << 20  # sentences whose lengths are computed at a time


class FileArray:
    """A 1-D array of fixed-size values stored in a file (raw, or the data of a ``.npy``), read with ``os.pread``.

    ``a[i]`` is a Python int, ``a[i:j]`` a numpy array (step 1 only), ``np.asarray(a)`` the whole array (read into
    memory). The file is opened once; the object pickles as its path, so a process started with "spawn" opens it
    again. ``pread`` does not move a file position, so forked processes and threads can share the object.

    Args:
        path: the file.
        dtype: the values' numpy dtype (with its byte order, e.g. ``"<u2"``).
        start: byte offset of the first value.
        count: number of values (None: as many as the file holds after ``start``).

    Raises:
        OSError: the file cannot be opened. ValueError: it is shorter than ``count`` values.
    """

    def __init__(self, path: Path, dtype: str | np.dtype, start: int = 0, count: int | None = None) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.start = start
        self._file = open(self.path, "rb")
        available = (os.fstat(self._file.fileno()).st_size - start) // self.dtype.itemsize
        self.count = available if count is None else count
        if self.count > available:
            raise ValueError(f"{self.path}: {available} values where {self.count} were expected (a truncated file)")

    @classmethod
    def npy(cls, path: Path) -> FileArray:
        """The array of the 1-D ``.npy`` file ``path``.

        Raises:
            ValueError: the file is not a 1-D ``.npy`` array, or is truncated. OSError: it cannot be read.
        """
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            fmt = np.lib.format
            shape, _, dtype = (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(f)
            start = f.tell()
        if len(shape) != 1:
            raise ValueError(f"{path}: a 1-D array was expected, not shape {shape}")
        return cls(path, dtype, start, shape[0])

    def __len__(self) -> int:
        return self.count

    @property
    def ndim(self) -> int:
        return 1

    def read(self, first: int, stop: int) -> np.ndarray:
        """Values ``first`` to ``stop - 1`` (0 <= first <= stop <= len), as a read-only array."""
        size = self.dtype.itemsize
        data = os.pread(self._file.fileno(), (stop - first) * size, self.start + first * size)
        if len(data) != (stop - first) * size:
            raise ValueError(f"{self.path}: the file ended before value {stop - 1} (truncated while open?)")
        return np.frombuffer(data, dtype=self.dtype)

    def __getitem__(self, key: int | slice) -> Any:
        if isinstance(key, slice):
            first, stop, step = key.indices(self.count)
            if step != 1:
                raise ValueError("a FileArray reads ranges with step 1 only")
            return self.read(first, max(first, stop))
        i = int(key)
        if not -self.count <= i < self.count:
            raise IndexError(f"value {i} of {self.count}")
        return self.read(i % self.count, i % self.count + 1)[0].item()

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self.read(0, self.count)
        return whole if dtype is None else whole.astype(dtype)

    def __reduce__(self) -> tuple[Any, ...]:
        return FileArray, (self.path, self.dtype.str, self.start, self.count)

    def __repr__(self) -> str:
        return f"FileArray({str(self.path)!r}, {self.dtype.str!r}, count={self.count})"


class TokenArrays(Sequence[list[int]]):
    """The piece ids of N sentences: sentence i is ``ids[offsets[i]:offsets[i + 1]]``.

    Item i is a list of ints, so it collates as the lists of an in-memory dataset do; :attr:`lengths` is an array.

    Args:
        ids: (P,) piece ids: a numpy array (any integer dtype) or a :class:`FileArray`.
        offsets: (N + 1,) increasing int64 positions in ``ids``, from 0 to P (an array or a :class:`FileArray`).

    Raises:
        ValueError: ``offsets`` does not start at 0, end at P, or is not increasing.
    """

    def __init__(self, ids: np.ndarray | FileArray, offsets: np.ndarray | FileArray) -> None:
        if offsets.ndim != 1 or len(offsets) == 0 or offsets[0] != 0 or offsets[-1] != len(ids):
            raise ValueError(f"offsets must run from 0 to len(ids)={len(ids)}")
        self.lengths = np.empty(len(offsets) - 1, dtype=np.int32)
        """(N,) int32 pieces per sentence."""
        # Block by block: the int64 differences of a whole corpus would be twice the int32 lengths, as a peak.
        for start in range(0, len(self.lengths), _BLOCK):
            diff = np.diff(offsets[start : start + _BLOCK + 1])
            if diff.min() < 0:
                raise ValueError("offsets must not decrease")
            # Non-decreasing offsets from 0 to P make every length at most P: only a huge P needs this pass.
            if len(ids) > np.iinfo(np.int32).max and diff.max() > np.iinfo(np.int32).max:
                raise ValueError("a sentence has more than 2**31 - 1 pieces")
            self.lengths[start : start + len(diff)] = diff
        self.ids = ids
        self.offsets = offsets

    @classmethod
    def open(cls, ids_file: Path, offsets_file: Path, dtype: str) -> TokenArrays:
        """The sentences of ``ids_file`` (raw ``dtype`` values) and ``offsets_file`` (a 1-D int64 ``.npy``), read
        with ``pread`` (:class:`FileArray`).

        Raises:
            ValueError: as the constructor, or ``offsets_file`` is not a 1-D little-endian int64 ``.npy``. OSError: a
            file cannot be read.
        """
        offsets = FileArray.npy(offsets_file)
        if offsets.dtype != np.dtype("<i8"):
            raise ValueError(f"{offsets_file}: offsets must be little-endian int64, not {offsets.dtype.str}")
        return cls(FileArray(ids_file, dtype), offsets)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> list[int]:  # type: ignore[override]
        if not -len(self) <= i < len(self):
            raise IndexError(f"sentence {i} of {len(self)}")
        i %= len(self)
        start, end = self.offsets[i : i + 2].tolist()
        return self.ids[start:end].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        return (self[i] for i in range(len(self)))

    def __reduce__(self) -> tuple[Any, ...]:
        # The lengths are computed again: file-backed arrays then pickle as their file names.
        return TokenArrays, (self.ids, self.offsets)


def lengths_of(sentences: Sequence[Sequence[int]]) -> np.ndarray:
    """(N,) int32 length of each sentence; from :attr:`TokenArrays.lengths` without touching the ids."""
    if isinstance(sentences, TokenArrays):
        return sentences.lengths
    return np.fromiter(map(len, sentences), dtype=np.int32, count=len(sentences))
