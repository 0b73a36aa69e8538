"""The Multi30k Task 1 corpus (German-English image captions), read from a local folder or downloaded and cached."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from seq2seq_lit.data._files import sha256_file
from seq2seq_lit.data.corpus import PathLike, check_split
from seq2seq_lit.data.download import fetch_gzip
from seq2seq_lit.errors import ConfigError

log = logging.getLogger(__name__)

LANGS = ("de", "en")
DATA_DIR_ENV = "SEQ2SEQ_DATA_DIR"
DEFAULT_CACHE_DIR = "~/.cache/seq2seq_lit/multi30k"
DEFAULT_BASE_URL = (
    "https://raw.githubusercontent.com/multi30k/dataset/a3d2e0d26b56f3846f66a952536ffed4e401d05a/data/task1/raw"
)
# sha256 of the decompressed files at the commit in DEFAULT_BASE_URL.
MULTI30K_SHA256: dict[str, str] = {
    "test_2016_flickr.de": "4be6b5b3236b79c25475c6bb829800a7ce559e9ba7a1f6c2394fe4d40be46d16",
    "test_2016_flickr.en": "399a4382932c1aadd3ceb9bef1008d388a64c76d4ae4e9d4728c6f4301cac182",
    "train.de": "2c2b73fd2b548fbcde3a875e0a78d6ee94d498bfdee6bd3eae3945779e9ddf72",
    "train.en": "460a15fbd157e34a7a9957ee388c1ca247fe47af3ef25fb50442af6c274e0fc6",
    "val.de": "660e09eb7e1da2f856ea13ee5ad3cf6d36b3d5b0b733c857e94c5747a3dfc660",
    "val.en": "1f2a23d992769b5b3d209b0a10dd0b77c08cceb1f20dfb97ed0aafa49d107227",
}


class Multi30k:
    """Multi30k Task 1: train (29,000 pairs), val (1,014) and a test split (default test_2016_flickr, 1,000).

    Where the files come from, first match wins:

    1. ``data_dir`` if given, or else ``$SEQ2SEQ_DATA_DIR/multi30k``, when it holds all six files
       ``{train,val,<test_split>}.{de,en}``: they are read in place (never copied or written to);
    2. otherwise :meth:`prepare` downloads ``<base_url>/<name>.gz`` into ``cache_dir``, checked against ``sha256``.

    Args:
        src_lang, tgt_lang: "de" or "en", different.
        data_dir: folder with the decompressed files, or None to use ``$SEQ2SEQ_DATA_DIR/multi30k``.
        cache_dir: download folder ("~" is expanded).
        base_url: URL of the folder holding ``<split>.<lang>.gz``.
        test_split: file stem of the test split, e.g. "test_2017_flickr" (downloading it needs its digests in
            ``sha256``).
        sha256: digests of the decompressed files by file name ("train.de"); entries override or extend
            :data:`MULTI30K_SHA256`.

    Raises:
        ConfigError: a language is not de/en, or both are the same.
    """

    def __init__(
        self,
        src_lang: str = "de",
        tgt_lang: str = "en",
        data_dir: PathLike | None = None,
        cache_dir: PathLike = DEFAULT_CACHE_DIR,
        base_url: str = DEFAULT_BASE_URL,
        test_split: str = "test_2016_flickr",
        sha256: Mapping[str, str] | None = None,
    ) -> None:
        for name, lang in (("src_lang", src_lang), ("tgt_lang", tgt_lang)):
            if lang not in LANGS:
                raise ConfigError(f"Multi30k {name}={lang!r} is not available; fix: choose one of {', '.join(LANGS)}")
        if src_lang == tgt_lang:
            raise ConfigError(
                f"Multi30k src_lang and tgt_lang are both {src_lang!r}; fix: choose two different languages of "
                f"{', '.join(LANGS)}"
            )
        self.src_lang = src_lang
        self.tgt_lang = tgt_lang
        self.data_dir = Path(data_dir).expanduser() if data_dir is not None else None
        self.cache_dir = Path(cache_dir).expanduser()
        self.base_url = base_url.rstrip("/")
        self.test_split = test_split
        self.sha256 = {**MULTI30K_SHA256, **(sha256 or {})}

    def paths(self, split: str) -> tuple[Path, Path]:
        """(source file, target file) of ``split`` ("train", "val" or "test"), in the local folder or the cache.

        Raises:
            ConfigError: unknown split.
        """
        check_split(split)
        folder = self._local_dir() or self.cache_dir
        stem = self._stem(split)
        return folder / f"{stem}.{self.src_lang}", folder / f"{stem}.{self.tgt_lang}"

    def prepare(self) -> None:
        """Download the files into ``cache_dir`` unless a local folder has them all or they are already cached.

        Raises:
            ConfigError: a needed file has no sha256 entry, or ``$SEQ2SEQ_DATA_DIR`` names a folder that does not
                exist (a relative path from another working folder: nothing is downloaded behind the user's back).
            DataError: a download failed or its checksum differs (see :func:`fetch_gzip`).
        """
        local = self._local_dir()
        if local is not None:
            log.info("Multi30k: reading %s in place", local)
            self._warn_on_checksum_mismatch(local)
            return
        env = os.environ.get(DATA_DIR_ENV) if self.data_dir is None else None
        if env and not Path(env).expanduser().is_dir():
            raise ConfigError(
                f"{DATA_DIR_ENV}={env}: no such folder (from here it is {Path(env).expanduser().absolute()}). Fix: set "
                f"{DATA_DIR_ENV} to the absolute path of the folder that holds multi30k/, or unset it to download "
                f"the corpus into {self.cache_dir}"
            )
        if self.data_dir is not None or env:
            log.warning(
                "Multi30k: %s lacks some of %s; downloading into %s instead",
                self.data_dir or f"{DATA_DIR_ENV}={env}: {Path(env).expanduser() / 'multi30k'}",
                ", ".join(self._file_names()), self.cache_dir,
            )
        folder = self.data_dir or (Path(env).expanduser() / "multi30k" if env else None)
        hint = (
            f"Or, offline, put the decompressed files {', '.join(self._file_names())} into {folder} (now missing "
            f"some of them)."
            if folder is not None
            else f"Or, offline, put the decompressed files {', '.join(self._file_names())} into a folder DIR/multi30k "
            f"and set {DATA_DIR_ENV}=DIR (or set the corpus' data_dir to that folder)."
        )
        if missing := [name for name in self._file_names() if name not in self.sha256]:
            raise ConfigError(
                f"Multi30k has no sha256 for {', '.join(missing)}, so it cannot verify the download; fix: add it to "
                f"the corpus' sha256 setting (sha256 of the decompressed file), or provide the files via data_dir"
            )
        for name in self._file_names():
            fetch_gzip(f"{self.base_url}/{name}.gz", self.cache_dir / name, self.sha256[name], hint=hint)

    def _stem(self, split: str) -> str:
        return self.test_split if split == "test" else split

    def _file_names(self) -> list[str]:
        return [f"{self._stem(split)}.{lang}" for split in ("train", "val", "test") for lang in LANGS]

    def _local_dir(self) -> Path | None:
        """The local folder to read in place, or None when files must come from the cache."""
        if self.data_dir is not None:
            folder = self.data_dir
        elif os.environ.get(DATA_DIR_ENV):
            folder = Path(os.environ[DATA_DIR_ENV]).expanduser() / "multi30k"
        else:
            return None
        return folder if all((folder / name).is_file() for name in self._file_names()) else None

    def _warn_on_checksum_mismatch(self, folder: Path) -> None:
        # Local files may be a deliberate variant, so a mismatch is worth a warning, not an error.
        for name in self._file_names():
            expected = self.sha256.get(name)
            if expected is not None and (actual := sha256_file(folder / name)) != expected.lower():
                log.warning(
                    "Multi30k: %s has sha256 %s, expected %s: results may not be comparable with the published corpus",
                    folder / name, actual, expected,
                )

    def __repr__(self) -> str:
        return (
            f"Multi30k(src_lang={self.src_lang!r}, tgt_lang={self.tgt_lang!r}, data_dir={self.data_dir}, "
            f"cache_dir={self.cache_dir}, test_split={self.test_split!r})"
        )
