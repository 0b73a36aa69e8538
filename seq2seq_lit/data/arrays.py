"""Encoded sentences as one flat array of piece ids plus offsets (as fairseq's indexed datasets), read from memory
maps: no Python object per sentence, and processes that map the same files share their pages through the OS.

N is the number of sentences, P the number of pieces of all of them together.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

_BLOCK = 1 << 20  # sentences whose lengths are computed at a time


class TokenArrays(Sequence[list[int]]):
    """The piece ids of N sentences: sentence i is ``ids[offsets[i]:offsets[i + 1]]``.

    Item i is a list of ints, so it collates as the lists of an in-memory dataset do; :attr:`lengths` is an array.

    Args:
        ids: (P,) piece ids (a numpy array or memory map, any integer dtype).
        offsets: (N + 1,) increasing int64 positions in ``ids``, from 0 to P.
        files: the (ids, offsets) files the arrays were mapped from; pickling (DataLoader workers started with
            "spawn") then maps them again instead of copying the data.

    Raises:
        ValueError: ``offsets`` does not start at 0, end at P, or is not increasing.
    """

    def __init__(self, ids: np.ndarray, offsets: np.ndarray, files: tuple[Path, Path] | None = None) -> None:
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
        self.files = files

    @classmethod
    def open(cls, ids_file: Path, offsets_file: Path, dtype: str) -> TokenArrays:
        """Map ``ids_file`` (raw ``dtype`` values) and ``offsets_file`` (``.npy``) read-only.

        Raises:
            ValueError: as the constructor; OSError: a file cannot be read.
        """
        ids = np.memmap(ids_file, dtype=dtype, mode="r") if ids_file.stat().st_size else np.zeros(0, dtype)
        return cls(ids, np.load(offsets_file, mmap_mode="r"), (ids_file, offsets_file))

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> list[int]:  # type: ignore[override]
        if not -len(self) <= i < len(self):
            raise IndexError(f"sentence {i} of {len(self)}")
        i %= len(self)
        return self.ids[self.offsets[i] : self.offsets[i + 1]].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        return (self[i] for i in range(len(self)))

    def __reduce__(self) -> tuple[Any, ...]:
        if self.files is None:
            return TokenArrays, (np.asarray(self.ids), np.asarray(self.offsets))
        return TokenArrays.open, (*self.files, self.ids.dtype.str)


def lengths_of(sentences: Sequence[Sequence[int]]) -> np.ndarray:
    """(N,) int32 length of each sentence; from :attr:`TokenArrays.lengths` without touching the ids."""
    if isinstance(sentences, TokenArrays):
        return sentences.lengths
    return np.fromiter(map(len, sentences), dtype=np.int32, count=len(sentences))
