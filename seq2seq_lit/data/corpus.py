"""Reading parallel text files, and the corpus objects that say where a corpus' train/val/test files are.

A corpus is any object with ``paths(split) -> (src_path, tgt_path)`` for ``split`` in :data:`SPLITS` and ``prepare()``,
which makes the files available (downloading them if needed). :class:`ParallelText` points at local files;
:class:`~seq2seq_lit.data.multi30k.Multi30k` finds or downloads Multi30k.
"""

from __future__ import annotations

import gzip
import logging
import os
import zlib
from collections.abc import Iterator
from itertools import chain, islice
from pathlib import Path
from typing import BinaryIO, Protocol

from seq2seq_lit.data.encoding import check_text_bytes
from seq2seq_lit.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")

PathLike = str | os.PathLike[str]


class Corpus(Protocol):
    """What :class:`~seq2seq_lit.data.datamodule.TranslationDataModule` needs from a corpus."""

    def paths(self, split: str) -> tuple[Path, Path]:
        """(source file, target file) of ``split``."""
        ...

    def prepare(self) -> None:
        """Make the files available (download them if needed)."""
        ...


def check_split(split: str) -> None:
    """Raises ConfigError if ``split`` is not one of :data:`SPLITS`."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; fix: use one of {', '.join(SPLITS)}")


def decode_lines(data: bytes, name: str, fix: str, first_line: int = 1, offset: int = 0) -> list[str]:
    """Lines of UTF-8 ``data`` as :func:`read_lines` splits them (on "\\n", a "\\r" before it dropped, a final
    newline ending the last line, a leading byte order mark dropped).

    Args:
        data: the bytes of a file or a stream.
        name: what to call it in an error (a path, ``<stdin>``).
        fix: how to fix invalid UTF-8, for the error message.
        first_line, offset: the line number and byte offset of ``data`` in its stream (a line read from stdin), for
            the error message; a byte order mark is dropped only at offset 0.

    Raises:
        DataError: ``data`` is not valid UTF-8 (the message gives the line, the byte offset in the line and in the data),
            or is UTF-16/UTF-32 text or holds NUL bytes (:func:`~seq2seq_lit.data.encoding.check_text_bytes`).
    """
    return _decode_block(data, name, fix, first_line=first_line, offset=offset)


def _decode_block(data: bytes, name: str, fix: str, first_line: int, offset: int) -> list[str]:
    """The lines of ``data``, which starts at line ``first_line`` and byte ``offset`` of its stream (for errors and
    the byte order mark, dropped at offset 0)."""
    check_text_bytes(data, name, first_line, offset)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = first_line + data.count(b"\n", 0, e.start)
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1)
        raise DataError(
            f"{name}:{line}: invalid UTF-8 at byte {column} of the line (file offset {offset + e.start}; offsets count "
            f"from 0): {e.reason} (bytes {data[e.start:e.end].hex(' ')}); fix: {fix}"
        ) from None
    lines = (text.removeprefix("\ufeff") if offset == 0 else text).split("\n")
    if lines[-1] == "":
        lines.pop()  # the final "\n" ends the last line; it does not start an empty one
    return [line[:-1] if line.endswith("\r") else line for line in lines]


GZIP_MAGIC = b"\x1f\x8b"
BLOCK_BYTES = 1 << 24
"""Bytes read (and decoded) at a time by :func:`iter_line_blocks`."""


def open_corpus_file(path: PathLike) -> BinaryIO:
    """``path`` opened for reading bytes; a gzip file (recognised by its first bytes, e.g. ``train.de.gz``) is
    decompressed on the fly.

    Raises:
        DataError: the file is missing or unreadable.
    """
    path = Path(path)
    try:
        f = open(path, "rb")
        if f.read(2) == GZIP_MAGIC:
            f.close()
            return gzip.open(path, "rb")
        f.seek(0)
        return f
    except FileNotFoundError:
        raise DataError(
            f"{path}: file not found (resolved to {path.absolute()}). Fix: correct the option or data config key "
            f"that names it (a path relative to the folder the command runs in)."
        ) from None
    except OSError as e:
        message = f"{path}: cannot read the file ({e.strerror}). Fix: point the data config at a readable file."
        raise DataError(message) from None


def iter_line_blocks(path: PathLike, block_bytes: int = BLOCK_BYTES) -> Iterator[list[str]]:
    """The lines of a UTF-8 text file (plain or gzip), as :func:`read_lines` splits them, in lists of about
    ``block_bytes`` of text each: the file is read as a stream, never held whole.

    This is the one place where corpus text is read and decoded.

    Raises:
        DataError: the file is missing or unreadable, not valid gzip, has 0 lines, or is not valid UTF-8 (the message
            gives the line, the byte offset in the line and in the (decompressed) file).
    """
    path = Path(path)
    fix = f"re-encode the file as UTF-8, e.g. iconv -f latin1 -t utf-8 {path} > {path.name}.utf8"
    line, offset, rest = 1, 0, b""
    with open_corpus_file(path) as f:
        while True:
            chunk = _read_block(f, block_bytes, path, line - 1 + rest.count(b"\n"))
            data = rest + chunk
            # Decode whole lines only (a block boundary may fall inside a character); at the end of the stream the
            # last line needs no "\n".
            cut = data.rfind(b"\n") + 1 if chunk else len(data)
            block, rest = data[:cut], data[cut:]
            if block:
                lines = _decode_block(block, str(path), fix, line, offset)
                line, offset = line + len(lines), offset + len(block)
                yield lines
            if not chunk:
                break
    if line == 1:
        raise DataError(f"{path}: file is empty (0 lines). Fix: point the data config at the right file, or fill it.")


def _read_block(f: BinaryIO, size: int, path: Path, lines_before: int) -> bytes:
    """Up to ``size`` bytes of ``f``, read with ``read1`` (one decompressed piece at a time), so that a gzip stream
    cut short is reported after the last line that could be decompressed, not after the last whole block.

    Raises:
        DataError: the (gzip) file ends early or is corrupt, naming the last complete line read.
    """
    parts, got = [], 0
    while got < size:
        try:
            part = f.read1(size - got)
        except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
            complete = lines_before + sum(p.count(b"\n") for p in parts)
            raise DataError(
                f"{path}: not a complete gzip file ({e}); it breaks off after line {complete} (the last complete line "
                f"that could be read). Fix: download or compress it again (gzip -t {path} checks it)"
            ) from None
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def read_lines(path: PathLike) -> list[str]:
    """Lines of a UTF-8 text file (plain or gzip), without their line ending ("\\n" or "\\r\\n"); other whitespace
    is kept.

    A final line without a newline counts as a line; a leading UTF-8 byte order mark is dropped. Lines are split on
    "\\n" only (not on the other Unicode line breaks that ``str.splitlines`` knows), so that a stray U+2028 inside a
    sentence cannot shift the alignment of a parallel corpus.

    Raises:
        DataError: as :func:`iter_line_blocks`.
    """
    return list(chain.from_iterable(iter_line_blocks(path)))


def iter_parallel(
    src_path: PathLike, tgt_path: PathLike, chunk_lines: int = 50_000
) -> Iterator[tuple[list[str], list[str]]]:
    """(source lines, target lines) of a parallel corpus in chunks of ``chunk_lines`` pairs, read as streams.

    Raises:
        DataError: either file cannot be read (see :func:`iter_line_blocks`), or their line counts differ (raised when
            the shorter file ends, after the chunks before).
    """
    src_lines = chain.from_iterable(iter_line_blocks(src_path))
    tgt_lines = chain.from_iterable(iter_line_blocks(tgt_path))
    seen = 0
    while True:
        src, tgt = list(islice(src_lines, chunk_lines)), list(islice(tgt_lines, chunk_lines))
        if len(src) != len(tgt):
            num_src = seen + len(src) + sum(1 for _ in src_lines)
            num_tgt = seen + len(tgt) + sum(1 for _ in tgt_lines)
            raise DataError(
                f"{src_path} has {num_src} lines but {tgt_path} has {num_tgt} lines; a parallel corpus needs one "
                f"translation per line. Fix: pair the right files, or repair the shorter one (a missing or extra "
                f"line, or a sentence split over two lines)."
            )
        if not src:
            return
        seen += len(src)
        yield src, tgt


def read_parallel(src_path: PathLike, tgt_path: PathLike) -> tuple[list[str], list[str]]:
    """Source and target lines of a parallel corpus: line i of the target file translates line i of the source file.

    Raises:
        DataError: as :func:`iter_parallel`.
    """
    src: list[str] = []
    tgt: list[str] = []
    for src_chunk, tgt_chunk in iter_parallel(src_path, tgt_path):
        src += src_chunk
        tgt += tgt_chunk
    return src, tgt


class ParallelText:
    """A corpus of local files, one sentence per line, UTF-8.

    Args:
        train_src, train_tgt, val_src, val_tgt: paths of the training and validation files.
        test_src, test_tgt: paths of the test files, or both None when there is no test set.

    Raises:
        ConfigError: only one of ``test_src`` and ``test_tgt`` is set.
    """

    def __init__(
        self,
        train_src: PathLike,
        train_tgt: PathLike,
        val_src: PathLike,
        val_tgt: PathLike,
        test_src: PathLike | None = None,
        test_tgt: PathLike | None = None,
    ) -> None:
        if (test_src is None) != (test_tgt is None):
            raise ConfigError(
                f"data.test_src={test_src!r} but data.test_tgt={test_tgt!r}; fix: set both (a test set needs source "
                f"and target files) or neither."
            )
        self._paths: dict[str, tuple[Path, Path] | None] = {
            "train": (_path(train_src), _path(train_tgt)),
            "val": (_path(val_src), _path(val_tgt)),
            "test": (_path(test_src), _path(test_tgt)) if test_src is not None and test_tgt is not None else None,
        }

    def paths(self, split: str) -> tuple[Path, Path]:
        """(source file, target file) of ``split``.

        Raises:
            ConfigError: ``split`` is not train, val or test.
            DataError: ``split`` is test and no test files were given.
        """
        check_split(split)
        paths = self._paths[split]
        if paths is None:
            raise DataError("this ParallelText corpus has no test files; fix: set data.test_src and data.test_tgt")
        return paths

    def prepare(self) -> None:
        """Nothing to do: the files are local."""

    def __repr__(self) -> str:
        return f"ParallelText({self._paths!r})"


def _path(p: PathLike) -> Path:
    return Path(p).expanduser()
