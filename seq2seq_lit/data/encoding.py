"""Recognising text that is not UTF-8 at all: UTF-16/32 (by byte-order mark) and binary files (by NUL bytes).

Such files often decode as UTF-8 without an error, or fail far from the cause: UTF-16 text of ASCII characters is
ASCII bytes with a NUL after each, so it reads as a short corpus of garbage lines. :func:`check_text_bytes` is called
by the corpus readers on the bytes of every file (or stream) before they are decoded.
"""

from __future__ import annotations

import codecs

from seq2seq_lit.errors import DataError

# UTF-32 first: its little-endian mark starts with UTF-16's.
_BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


def check_text_bytes(data: bytes, name: str, first_line: int = 1, offset: int = 0) -> None:
    """Raise DataError if ``data`` (a file's bytes, or a chunk of them that starts a line) is UTF-16 or UTF-32 text or
    holds NUL bytes, which no UTF-8 sentence contains.

    Args:
        data: the bytes to check.
        name: what to call them in the error (a path, ``<stdin>``).
        first_line: the 1-based line number ``data`` starts at (for a chunk of a stream); a byte-order mark is looked
            for only at line 1.
        offset: the byte offset of ``data`` in its file or stream (for the error).

    Raises:
        DataError: naming the file, the line of the first NUL byte, and the fix (``iconv``).
    """
    if first_line == 1:
        for mark, encoding in _BYTE_ORDER_MARKS:
            if data.startswith(mark):
                raise DataError(
                    f"{name}: {encoding} text (it starts with the {encoding} byte-order mark), not UTF-8. Fix: "
                    f"{_convert(name, encoding)}"
                )
    nul = data.find(b"\0")
    if nul >= 0:
        line = first_line + data.count(b"\n", 0, nul)
        raise DataError(
            f"{name}:{line}: a NUL byte (file offset {offset + nul}): not UTF-8 text, but a binary file or UTF-16/UTF-32 text "
            f"without a byte-order mark. Fix: {'pass text' if _is_stream(name) else 'pass the text file'}; "
            f"{_convert(name, 'UTF-16LE').replace('convert it', 'convert UTF-16', 1)}"
        )


def _is_stream(name: str) -> bool:
    return name.startswith("<")  # <stdin>


def _convert(name: str, encoding: str) -> str:
    """How to convert ``name`` (a file, or a stream such as ``<stdin>``) from ``encoding`` to UTF-8."""
    if _is_stream(name):
        return f"convert it before it is piped in, e.g. ... | iconv -f {encoding} -t UTF-8 | s2s-translate ..."
    return f"convert it, e.g. iconv -f {encoding} -t UTF-8 {name} > {name}.utf8"
