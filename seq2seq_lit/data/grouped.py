"""A corpus of long sentences derived from a corpus of short ones: k consecutive pairs joined into one, k = 1..K.

Each split of the wrapped corpus is cut, for every k = 1, ..., ``max_group``, into chunks of k consecutive pairs, in
corpus order; a chunk's source lines are joined with a space into one source line, its target lines into one target
line. The derived split holds the k = 1 lines (the split as it is), then the k = 2 lines, and so on, so that every
source line is used exactly once per k and the derived split has ``sum_k ceil(N / k)`` lines for N pairs. Where N is
not a multiple of k the last chunk of that k is kept with the ``N mod k`` pairs left (no line is left out); the
``groups.json`` beside the files records, per split and k, the line range and the size of that short last chunk, and
:meth:`Grouped.prepare` logs it.

Why: a model's quality by source length (Cho et al. 2014, Fig. 4; Bahdanau et al. 2015, Fig. 2) needs long sentences
over a vocabulary a model learns quickly. Joined Multi30k captions are natural text of 12 to 60+ words with the
vocabulary of one-sentence captions, so a model without attention that translates short captions can be asked to hold
four of them in its one fixed vector (issue 27).

The derived files are written once into ``cache_dir/<key>/`` (``{split}.{src_lang}``, ``{split}.{tgt_lang}``,
``groups.json``), where the key hashes the wrapped corpus' files (path and sha256), ``max_group`` and the format
version: another K or another input gives other files, and so another corpus store (:mod:`seq2seq_lit.data.store`
keys a store by its input files).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seq2seq_lit.data._files import atomic_write_bytes, sha256_file
from seq2seq_lit.data.corpus import SPLITS, Corpus, PathLike, check_split, read_parallel
from seq2seq_lit.data.multi30k import DEFAULT_CACHE_DIR, Multi30k
from seq2seq_lit.errors import ConfigError, DataError

log = logging.getLogger(__name__)

GROUPED_VERSION = 1
"""Part of the cache key: raised when the way lines are grouped or joined changes."""


def join_consecutive(lines: Sequence[str], k: int) -> list[str]:
    """``lines`` cut into chunks of ``k`` consecutive lines, each chunk joined with a space; the last chunk holds the
    ``len(lines) % k`` lines left where ``k`` does not divide ``len(lines)`` (so ``ceil(len(lines) / k)`` lines).

    Raises:
        ConfigError: ``k`` < 1.
    """
    if k < 1:
        raise ConfigError(f"a group of k={k} lines; fix: k must be at least 1")
    return [" ".join(lines[start : start + k]) for start in range(0, len(lines), k)]


def group_pairs(
    src_lines: Sequence[str], tgt_lines: Sequence[str], max_group: int
) -> tuple[list[str], list[str], dict[str, dict[str, int]]]:
    """(source lines, target lines, groups) of a split grouped for k = 1..``max_group`` (see the module docstring).

    ``groups[str(k)]`` is ``{"first_line", "lines", "short_last"}``: where the k lines start in the derived split
    (0-based), how many there are, and how many pairs the last chunk holds when it is short (0 when ``k`` divides N).

    Raises:
        ConfigError: ``max_group`` < 1, or the two sides differ in length.
    """
    check_max_group(max_group)
    if len(src_lines) != len(tgt_lines):
        raise ConfigError(f"{len(src_lines)} source lines but {len(tgt_lines)} target lines; fix: pass a parallel split")
    src: list[str] = []
    tgt: list[str] = []
    groups = {}
    for k in range(1, max_group + 1):
        groups[str(k)] = {"first_line": len(src), "lines": -(-len(src_lines) // k), "short_last": len(src_lines) % k}
        src += join_consecutive(src_lines, k)
        tgt += join_consecutive(tgt_lines, k)
    return src, tgt, groups


def check_max_group(max_group: Any) -> None:
    """Raises ConfigError unless ``max_group`` is an integer of at least 1."""
    if isinstance(max_group, bool) or not isinstance(max_group, int) or max_group < 1:
        raise ConfigError(
            f"data.corpus.max_group={max_group!r}; fix: the most consecutive pairs joined into one line, an integer of "
            f"at least 1 (1 gives the corpus as it is)"
        )


class Grouped:
    """Another corpus with every split grouped into chunks of 1..``max_group`` consecutive pairs (module docstring).

    Args:
        corpus: the corpus to group (any object with ``paths(split)`` and ``prepare()``).
        max_group: K, the most pairs joined into one line.
        cache_dir: where the derived files are written ("~" is expanded).

    Raises:
        ConfigError: ``max_group`` is not an integer of at least 1.
    """

    def __init__(self, corpus: Corpus, max_group: int = 4, cache_dir: PathLike = "~/.cache/seq2seq_lit/grouped") -> None:
        check_max_group(max_group)
        self.corpus = corpus
        self.max_group = max_group
        self.cache_dir = Path(cache_dir).expanduser()
        self.src_lang = getattr(corpus, "src_lang", "src")
        self.tgt_lang = getattr(corpus, "tgt_lang", "tgt")

    def prepare(self) -> None:
        """Prepare the wrapped corpus, then write the grouped splits (once; reused while the inputs are unchanged).

        A split whose files the wrapped corpus lacks (a corpus without a test set) is left out; its error is raised
        when it is used.

        Raises:
            DataError: a file of the wrapped corpus cannot be read, or its two sides differ in line count.
        """
        self.corpus.prepare()
        folder = self.folder()
        if (folder / "groups.json").is_file():
            return
        groups = {}
        for split in SPLITS:
            paths = self._inner_paths(split)
            if paths is None:
                continue
            src_lines, tgt_lines = read_parallel(*paths)
            src, tgt, groups[split] = group_pairs(src_lines, tgt_lines, self.max_group)
            for lines, path in zip((src, tgt), self.paths(split)):
                atomic_write_bytes(path, "".join(line + "\n" for line in lines).encode("utf-8"))
            for k, info in groups[split].items():
                if info["short_last"]:
                    log.info(
                        "grouped %s, k=%s: %d pairs are not a multiple of %s, so the last of its %d lines joins the %d "
                        "pairs left", split, k, len(src_lines), k, info["lines"], info["short_last"],
                    )
        atomic_write_bytes(folder / "groups.json", (json.dumps(groups, indent=2) + "\n").encode())
        log.info("wrote the splits of %r grouped by 1..%d pairs into %s", self.corpus, self.max_group, folder)

    def paths(self, split: str) -> tuple[Path, Path]:
        """(source file, target file) of the grouped ``split``, written by :meth:`prepare`.

        Raises:
            ConfigError: unknown split.
        """
        check_split(split)
        folder = self.folder()
        return folder / f"{split}.{self.src_lang}", folder / f"{split}.{self.tgt_lang}"

    def folder(self) -> Path:
        """``cache_dir/<key>``: the key hashes the wrapped corpus' files (path and sha256), ``max_group`` and
        :data:`GROUPED_VERSION`."""
        material: dict[str, Any] = {"version": GROUPED_VERSION, "max_group": self.max_group, "files": {}}
        for split in SPLITS:
            paths = self._inner_paths(split)
            material["files"][split] = [[str(p.resolve()), sha256_file(p)] for p in paths] if paths else None
        key = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]
        return self.cache_dir / key

    def _inner_paths(self, split: str) -> tuple[Path, Path] | None:
        """The wrapped corpus' files of ``split``, or None where it has none (yet)."""
        try:
            paths = self.corpus.paths(split)
        except DataError:  # a corpus without that split (ParallelText without test files)
            return None
        return paths if all(Path(p).is_file() for p in paths) else None

    def __repr__(self) -> str:
        return f"Grouped({self.corpus!r}, max_group={self.max_group}, cache_dir={self.cache_dir})"


def multi30k_long(
    src_lang: str = "de",
    tgt_lang: str = "en",
    cache_dir: PathLike = DEFAULT_CACHE_DIR,
    test_split: str = "test_2016_flickr",
    max_group: int = 4,
    grouped_dir: PathLike = "~/.cache/seq2seq_lit/multi30k_long",
    data_dir: PathLike | None = None,
) -> Grouped:
    """Multi30k (:class:`~seq2seq_lit.data.multi30k.Multi30k`, read from ``$SEQ2SEQ_DATA_DIR/multi30k`` or downloaded
    into ``cache_dir``) grouped by 1..``max_group`` consecutive captions, written into ``grouped_dir``
    (``conf/data/multi30k_long.yaml``).

    Raises:
        ConfigError: a language is not de/en, both are the same, or ``max_group`` is not an integer of at least 1.
    """
    inner = Multi30k(src_lang, tgt_lang, data_dir=data_dir, cache_dir=cache_dir, test_split=test_split)
    return Grouped(inner, max_group, grouped_dir)
