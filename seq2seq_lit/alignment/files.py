"""Reading word-alignment files (gold test sets, or training alignments from a statistical aligner), validated against
the parallel text they align.

One line per sentence pair, links separated by spaces, ``i`` a source word and ``j`` a target word (whitespace-separated
words of the pre-tokenized lines):

- ``pharaoh``: 0-based; ``i-j`` a sure link, ``i?j`` a possible one (fast_align, eflomal, Moses write ``i-j``);
- ``talp``: 1-based; ``i-j`` sure, ``ipj`` possible (the format of the Och & Ney and Vilar et al. gold sets).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from ..data import read_lines
from ..errors import ConfigError, DataError
from .scoring import GoldAlignment

FORMATS = {"pharaoh": (0, "?"), "talp": (1, "p")}  # format -> (index base, possible-link separator)


def parse_links(line: str, fmt: str, where: str) -> GoldAlignment:
    """The sure and possible ``(source, target)`` links (0-based) of one line in ``fmt``.

    Args:
        where: ``FILE:LINE`` for the error message.

    Raises:
        ConfigError: an unknown format.
        DataError: a token that is not a link of that format.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"alignment format {fmt!r}; fix: use one of {', '.join(FORMATS)}")
    base, possible_sep = FORMATS[fmt]
    pattern = re.compile(rf"(\d+)([-{re.escape(possible_sep)}])(\d+)")
    sure, possible = set(), set()
    for token in line.split():
        match = pattern.fullmatch(token)
        if match is None:
            example = "0-1 or 0?1" if fmt == "pharaoh" else "1-2 or 1p2"
            raise DataError(
                f"{where}: {token!r} is not a {fmt} link; fix: write links as {example} ({base}-based source-target "
                f"word indices), or choose the file's format with the format option (pharaoh or talp)"
            )
        link = (int(match[1]) - base, int(match[3]) - base)
        if min(link) < 0:
            raise DataError(f"{where}: {token!r} has index 0, but {fmt} indices start at 1; fix: use format pharaoh")
        possible.add(link)
        if match[2] == "-":
            sure.add(link)
    return GoldAlignment(frozenset(sure), frozenset(possible))


def read_alignments(
    path: str | Path, src_lines: Sequence[str], tgt_lines: Sequence[str], fmt: str = "pharaoh", corpus: str = ""
) -> list[GoldAlignment]:
    """The links of every line of ``path``, checked against the sentence pairs they align.

    Args:
        path: the alignment file; line k aligns ``src_lines[k]`` with ``tgt_lines[k]``.
        fmt: ``pharaoh`` or ``talp``.
        corpus: how to name the parallel text in errors (e.g. its file names).

    Raises:
        ConfigError: an unknown format.
        DataError: the file cannot be read, its line count differs from the corpus', a token is not a link, or a link
            points past the words of its sentence (the message names the file, the line and the fix).
    """
    if fmt not in FORMATS:
        raise ConfigError(f"alignment format {fmt!r} for {path}; fix: use one of {', '.join(FORMATS)}")
    lines = read_lines(path)
    if len(lines) != len(src_lines):
        raise DataError(
            f"{path} has {len(lines)} lines but the corpus {corpus or ''} has {len(src_lines)} sentence pairs; fix: "
            f"give one alignment line (possibly empty) per sentence pair, made from the same files"
        )
    result = []
    for number, (line, src, tgt) in enumerate(zip(lines, src_lines, tgt_lines), start=1):
        where = f"{path}:{number}"
        links = parse_links(line, fmt, where)
        n_src, n_tgt = len(src.split()), len(tgt.split())
        for i, j in sorted(links.possible):
            if i >= n_src or j >= n_tgt:
                base = FORMATS[fmt][0]
                raise DataError(
                    f"{where}: link {i + base}-{j + base} points past the sentence pair ({n_src} source, {n_tgt} target "
                    f"words, {fmt} indices are {base}-based); fix: align the same pre-tokenized files in the same "
                    f"order, source first, and check the format (pharaoh is 0-based, talp 1-based)"
                )
        result.append(links)
    return result
