"""Small file helpers shared by the download and tokenizer caches: hashing and atomic writes."""

from __future__ import annotations

import hashlib
import os

from ..utils.atomic import atomic_write_bytes as write_atomically


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 digest of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` by the project's rule for writes (:func:`seq2seq_lit.utils.atomic.atomic_open`),
    creating missing cache folders."""
    write_atomically(path, data, make_parents=True)
