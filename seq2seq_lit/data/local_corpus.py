"""Corpora that exist only as a local folder ``$SEQ2SEQ_DATA_DIR/<name>`` (no download URL), and several corpora
concatenated into one.

A folder corpus holds ``{train,val,test}.{src_lang,tgt_lang}``, read in place. :class:`Concatenated` trains on the
training files of several corpora one after the other, and validates and tests on those of the first one.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from seq2seq_lit.data._files import atomic_write_bytes, sha256_file
from seq2seq_lit.data.corpus import PathLike, check_split
from seq2seq_lit.errors import ConfigError, DataError

log = logging.getLogger(__name__)

DATA_DIR_ENV = "SEQ2SEQ_DATA_DIR"

# sha256 of newstest sets as listed in $SEQ2SEQ_DATA_DIR/wmt_news_deen/README.md.
WMT_NEWS_DEEN_SHA256: dict[str, str] = {
    "test.de": "c53059fc440b3771aef2a83b15fddd8d2b3490c55b552dcae245f9a2df126c9c",
    "test.en": "721b207ca2b4e4689f978e17ee5edb0988d7c901acd651fd666bcd9c1950233b",
    "train.de": "fcd0303c981e3314bb77bcdca4a5b280b0c0b2852f2a3e21b1509ce8ef2118c8",
    "train.en": "4d50cb0f31af64d5e4dad2c66356e4a456225e0e5ffdaea8b0a7a29d51fd2b6d",
    "val.de": "675e4f7e6045dacf56507e29b24106d771a571e0eb58d822806b086cdcf892f4",
    "val.en": "11adaec47477928dab9cb3fc9279d99dbbbfec7161f3abf6fddd759668fcd703",
}


class LocalCorpus:
    """A corpus read in place from ``data_dir`` (default ``$SEQ2SEQ_DATA_DIR/<name>``), files ``<split>.<lang>``.

    Args:
        name: the folder's name under ``$SEQ2SEQ_DATA_DIR`` (e.g. ``wmt_news_deen``).
        src_lang, tgt_lang: file suffixes of the two sides, different.
        data_dir: the folder itself, overriding ``$SEQ2SEQ_DATA_DIR/<name>``.
        sha256: expected digests by file name; a mismatch is a warning (local variants are allowed).

    Raises:
        ConfigError: both languages are the same.
    """

    def __init__(
        self,
        name: str,
        src_lang: str,
        tgt_lang: str,
        data_dir: PathLike | None = None,
        sha256: Mapping[str, str] | None = None,
    ) -> None:
        if src_lang == tgt_lang:
            raise ConfigError(f"{name}: src_lang and tgt_lang are both {src_lang!r}; fix: choose two different languages")
        self.name = name
        self.src_lang = src_lang
        self.tgt_lang = tgt_lang
        self.data_dir = Path(data_dir).expanduser() if data_dir is not None else None
        self.sha256 = dict(sha256 or {})

    def folder(self) -> Path:
        """The folder the files are read from.

        Raises:
            ConfigError: neither ``data_dir`` nor ``$SEQ2SEQ_DATA_DIR`` is set.
        """
        if self.data_dir is not None:
            return self.data_dir
        if not os.environ.get(DATA_DIR_ENV):
            raise ConfigError(
                f"corpus {self.name!r} has no download URL and {DATA_DIR_ENV} is not set; fix: set {DATA_DIR_ENV}=DIR "
                f"where DIR/{self.name} holds {', '.join(self._file_names())} (or set the corpus' data_dir)"
            )
        return Path(os.environ[DATA_DIR_ENV]).expanduser() / self.name

    def paths(self, split: str) -> tuple[Path, Path]:
        """(source file, target file) of ``split``. Raises: ConfigError for an unknown split or no folder."""
        check_split(split)
        folder = self.folder()
        return folder / f"{split}.{self.src_lang}", folder / f"{split}.{self.tgt_lang}"

    def prepare(self) -> None:
        """Check that the folder holds all six files (nothing is downloaded); warn on a checksum mismatch.

        Raises:
            DataError: the folder or some of its files are missing.
        """
        folder = self.folder()
        if missing := [name for name in self._file_names() if not (folder / name).is_file()]:
            raise DataError(
                f"{folder}: corpus {self.name!r} lacks {', '.join(missing)} (resolved to {folder.absolute()}); fix: "
                f"put {', '.join(self._file_names())} there, or set {DATA_DIR_ENV} to the folder above {self.name}/"
            )
        for name, expected in self.sha256.items():
            if (folder / name).is_file() and (actual := sha256_file(folder / name)) != expected.lower():
                log.warning("%s has sha256 %s, expected %s: results may not be comparable", folder / name, actual, expected)
        log.info("%s: reading %s in place", self.name, folder)

    def _file_names(self) -> list[str]:
        return [f"{split}.{lang}" for split in ("train", "val", "test") for lang in (self.src_lang, self.tgt_lang)]

    def __repr__(self) -> str:
        return f"LocalCorpus({self.name!r}, {self.src_lang!r}, {self.tgt_lang!r}, data_dir={self.data_dir})"


def wmt_news_deen(src_lang: str = "de", tgt_lang: str = "en", data_dir: PathLike | None = None) -> LocalCorpus:
    """WMT news German-English: newstest 2008-2016 + 2019 for training, newstest2017 as val, newstest2018 as test.

    Raises:
        ConfigError: a language is not de/en, or both are the same.
    """
    for label, lang in (("src_lang", src_lang), ("tgt_lang", tgt_lang)):
        if lang not in ("de", "en"):
            raise ConfigError(f"wmt_news_deen {label}={lang!r} is not available; fix: choose de or en")
    return LocalCorpus("wmt_news_deen", src_lang, tgt_lang, data_dir, WMT_NEWS_DEEN_SHA256)


class Concatenated:
    """Several corpora as one: training pairs of all of them, in the order given; val and test of the first.

    Args:
        corpora: at least one corpus (each with ``paths(split)`` and ``prepare()``); languages must agree.
        cache_dir: where the concatenated training files are written (named by the inputs' paths and sha256).
        src_lang, tgt_lang: if given, the languages every corpus must have.

    Raises:
        ConfigError: no corpus, or corpora whose languages differ (from each other or from the given ones).
    """

    def __init__(
        self, corpora: Sequence, cache_dir: PathLike, src_lang: str | None = None, tgt_lang: str | None = None
    ) -> None:
        corpora = list(corpora.values()) if isinstance(corpora, Mapping) else list(corpora)
        if not corpora:
            raise ConfigError("data.corpus.corpora is empty; fix: list at least one corpus")
        langs = {(getattr(c, "src_lang", src_lang), getattr(c, "tgt_lang", tgt_lang)) for c in corpora}
        if len(langs) > 1 or (src_lang, tgt_lang) not in (*langs, (None, None)):
            raise ConfigError(
                f"data.corpus.corpora have the languages {sorted(map(str, langs))}, data has {src_lang}-{tgt_lang}; "
                f"fix: use corpora of one language pair"
            )
        self.corpora = corpora
        self.src_lang, self.tgt_lang = langs.pop()
        self.cache_dir = Path(cache_dir).expanduser()

    def prepare(self) -> None:
        """Prepare every corpus, then write the concatenated training files (once; reused when the inputs are unchanged)."""
        for corpus in self.corpora:
            corpus.prepare()
        for side, target in zip((0, 1), self._train_paths()):
            if not target.is_file():
                data = b"".join(_with_final_newline(corpus.paths("train")[side].read_bytes()) for corpus in self.corpora)
                atomic_write_bytes(target, data)
                log.info("wrote %s (%d training files concatenated)", target, len(self.corpora))

    def paths(self, split: str) -> tuple[Path, Path]:
        """Concatenated training files for "train", else the first corpus' files. Raises: ConfigError (unknown split)."""
        check_split(split)
        return self._train_paths() if split == "train" else self.corpora[0].paths(split)

    def _train_paths(self) -> tuple[Path, Path]:
        digest = hashlib.sha256()
        for corpus in self.corpora:
            for path in corpus.paths("train"):
                digest.update(str(path.resolve()).encode() + b"\0" + sha256_file(path).encode() if path.is_file() else b"?")
        key = digest.hexdigest()[:16]
        return (self.cache_dir / f"train.{key}.{self.src_lang}", self.cache_dir / f"train.{key}.{self.tgt_lang}")

    def __repr__(self) -> str:
        return f"Concatenated({self.corpora!r})"


def _with_final_newline(data: bytes) -> bytes:
    return data if not data or data.endswith(b"\n") else data + b"\n"
