"""The corpus store: a corpus' splits encoded once into flat arrays on disk that every run and process shares.

A store is a folder ``<store_dir>/<key>/`` holding, per split and side, the piece ids of all sentences one after the
other (``<split>.<side>.bin``, raw little-endian uint16, or int32 for vocabularies above 65,536 pieces) and their
offsets (``<split>.<side>.offsets.npy``), the corpus positions of the kept training pairs (``train.index.npy``), the
tokenizer models, and ``manifest.json`` (sizes and sha256 of every file, pair and token counts, the key's inputs).

The key is a sha256 of the store format version, of each input file's fingerprint (size, modification time and a
sha256 of its first, middle and last MiB: a changed file is noticed without reading all of it; with
``data.store_hash_files=true`` the sha256 of the whole file instead, so that a file changed in place with its size and
modification time kept is noticed too, at the cost of reading every corpus file at each start), of the tokenizer
settings (or of the given tokenizers' models) and of ``max_length``. Anything else that would change the arrays is in
the tokenizer settings; the cache folder of the sentencepiece models is not part of the key.

Writing is atomic: a store is built in a temporary folder beside its final place, every file is fsynced, and the
folder is renamed into place only once complete; a build that fails or is killed leaves no store that a later run
opens (its temporary folder is removed by the next build of the same key). A file lock lets one process build while the
others (DDP processes, jobs of a sweep) wait and then open the finished store. Opening checks the manifest, the file
sizes and the offsets; :func:`open_store` with ``verify=True`` also checks every file's sha256. A damaged store is
rebuilt with a warning.

N is the number of pairs of a split.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sentencepiece as spm
from filelock import FileLock, Timeout
from tqdm.auto import tqdm

from seq2seq_lit.data._files import sha256_file
from seq2seq_lit.data.arrays import FileArray, TokenArrays
from seq2seq_lit.data.batching import TranslationDataset
from seq2seq_lit.data.corpus import SPLITS, Corpus, PathLike, iter_parallel, open_corpus_file
from seq2seq_lit.data.tokenizer import (
    SAMPLE_SEED,
    SentencePieceTokenizer,
    Tokenizers,
    _num_threads,
    build_tokenizers,
    sample_positions,
)
from seq2seq_lit.data.word_cache import WordCache
from seq2seq_lit.errors import ConfigError, DataError
from seq2seq_lit.utils.full_disk import as_full_disk_error
from seq2seq_lit.utils.output_guard import check_output_dir

log = logging.getLogger(__name__)

STORE_VERSION = 1
SIDES = ("src", "tgt")
MANIFEST = "manifest.json"
_SAMPLE_BYTES = 1 << 20
_CHUNK_PAIRS = 50_000  # pairs encoded at a time: bounds the Python lists that sentencepiece returns
_MAX_CACHE_WORKERS = 8

Encoder = SentencePieceTokenizer | WordCache
"""What encodes a side: ``encode_flat(lines, num_threads)`` and ``vocab_size``."""


class DamagedStore(Exception):
    """A store folder that must not be used (incomplete, truncated, or not matching its manifest)."""


def file_fingerprint(path: PathLike, whole: bool = False) -> dict[str, Any]:
    """``{"size", "mtime_ns", "sample_sha256"}`` of a file: its size in bytes, its modification time, and a sha256 of
    its first, middle and last MiB; with ``whole``, ``{"size", "sha256"}``: the sha256 of all of it (the modification
    time left out, so that a copy or a ``touch`` of the same text keeps the store).

    Raises:
        DataError: the file is missing or unreadable.
    """
    open_corpus_file(path).close()  # the reader's error for a missing or unreadable file
    if whole:
        return {"size": os.stat(path).st_size, "sha256": sha256_file(path)}
    stat = os.stat(path)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for start in sorted({0, max(0, stat.st_size // 2 - _SAMPLE_BYTES // 2), max(0, stat.st_size - _SAMPLE_BYTES)}):
            f.seek(start)
            digest.update(f.read(_SAMPLE_BYTES))
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sample_sha256": digest.hexdigest()}


def corpus_files(corpus: Corpus, need_train: bool = True) -> dict[str, tuple[Path, Path]]:
    """(source, target) file of each split whose files can be read; a split without them (a corpus without test
    files, or the training files when given tokenizers make them unnecessary) is left out, and raises its error when
    the data module needs it.

    Raises:
        DataError: ``need_train`` and the training files are missing or unreadable.
    """
    files = {}
    for split in SPLITS:
        try:
            paths = corpus.paths(split)
            for path in paths:
                open_corpus_file(path).close()
        except DataError:
            if split == "train" and need_train:
                raise
            continue
        files[split] = paths
    return files


def store_key(
    files: Mapping[str, tuple[Path, Path]],
    tokenizer_settings: Mapping[str, Any],
    max_length: int | None,
    tokenizers: Tokenizers | None = None,
    hash_files: bool = False,
) -> tuple[str, dict[str, Any]]:
    """(key, what it hashes) of the store of ``files`` (by split) encoded with the given ``tokenizers``, or with
    tokenizers trained by ``tokenizer_settings``, and filtered with ``max_length``; ``hash_files``: fingerprint the
    files by the sha256 of their whole content (see :func:`file_fingerprint`).

    Raises:
        DataError: an input file is missing or unreadable.
    """
    if tokenizers is not None:
        state = tokenizers.state_dict()
        digest = hashlib.sha256(json.dumps([state["joint"], state["src_vocabulary"], state["tgt_vocabulary"]]).encode())
        digest.update(state["src"])
        digest.update(state["tgt"])
        tokenizer: dict[str, Any] = {"given": digest.hexdigest()}
    else:
        tokenizer = {k: v for k, v in tokenizer_settings.items() if k != "cache_dir"}
        tokenizer |= {"sentencepiece": spm.__version__, "sample_seed": SAMPLE_SEED}
    material = {
        "version": STORE_VERSION,
        "files": {split: [file_fingerprint(p, hash_files) for p in paths] for split, paths in files.items()},
        "tokenizer": tokenizer,
        "max_length": max_length,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32], material


@dataclass
class CorpusStore:
    """An opened store: the tokenizers and each split's encoded pairs, read from its files as needed.

    Attributes:
        path: the store's folder.
        manifest: the content of its ``manifest.json``.
        tokenizers: the tokenizers the pairs were encoded with.
    """

    path: Path
    manifest: dict[str, Any]
    tokenizers: Tokenizers
    _datasets: dict[str, TranslationDataset] = field(default_factory=dict, repr=False)

    @property
    def splits(self) -> list[str]:
        """The splits in the store."""
        return list(self.manifest["splits"])

    @property
    def num_filtered(self) -> dict[str, int]:
        """Training pairs dropped: ``{"empty": ..., "too_long": ...}``."""
        train = self.manifest["splits"].get("train")
        return dict(train["dropped"]) if train else {"empty": 0, "too_long": 0}

    def dataset(self, split: str) -> TranslationDataset:
        """The encoded pairs of ``split`` (for train: the kept ones, with their corpus positions as indices).

        Raises:
            KeyError: ``split`` is not in the store. DamagedStore: its files do not fit together.
        """
        if split in self._datasets:
            return self._datasets[split]
        info = self.manifest["splits"][split]
        try:
            sides = [
                TokenArrays.open(self.path / f"{split}.{side}.bin", self.path / f"{split}.{side}.offsets.npy", info["dtype"])
                for side in SIDES
            ]
            indices = FileArray.npy(self.path / "train.index.npy") if split == "train" else None
            self._datasets[split] = TranslationDataset(*sides, indices)
        except (OSError, ValueError) as e:
            raise DamagedStore(f"{split}: {e}") from None
        return self._datasets[split]

    @classmethod
    def open(cls, path: Path, verify: bool = False) -> CorpusStore:
        """Open the store at ``path``, checking its manifest, file sizes and offsets (and with ``verify`` every file's
        sha256).

        Raises:
            DamagedStore: the store is incomplete or does not match its manifest. FileNotFoundError: there is none.
        """
        if not path.is_dir():
            raise FileNotFoundError(path)
        try:
            manifest = json.loads((path / MANIFEST).read_text())
            if manifest.get("version") != STORE_VERSION:
                raise DamagedStore(f"format version {manifest.get('version')}, expected {STORE_VERSION}")
            for name, expected in manifest["files"].items():
                size = (path / name).stat().st_size
                if size != expected["size"]:
                    raise DamagedStore(f"{name} has {size} bytes, the manifest says {expected['size']}")
                if verify and sha256_file(path / name) != expected["sha256"]:
                    raise DamagedStore(f"{name} does not match its sha256 in the manifest")
            tok = manifest["tokenizers"]
            tokenizers = Tokenizers.from_state_dict(
                {
                    "joint": tok["joint"],
                    "src": (path / tok["src_model"]).read_bytes(),
                    "tgt": (path / tok["tgt_model"]).read_bytes(),
                    "src_vocabulary": tok["src_vocabulary"],
                    "tgt_vocabulary": tok["tgt_vocabulary"],
                }
            )
        except PermissionError:
            raise  # another user's store this user may not read: not damaged (open_store says what to do)
        except (OSError, ValueError, KeyError, TypeError, DataError) as e:
            raise DamagedStore(f"{type(e).__name__}: {e}") from None
        store = cls(path, manifest, tokenizers)
        for split in store.splits:
            store.dataset(split)  # checks the offsets
        return store


def open_store(
    corpus: Corpus,
    tokenizer_settings: Mapping[str, Any],
    max_length: int | None,
    store_dir: PathLike,
    tokenizers: Tokenizers | None = None,
    verify: bool = False,
    progress: bool | None = None,
    hash_files: bool = False,
) -> CorpusStore:
    """The store of ``corpus`` encoded with ``tokenizers`` (or with ones trained by ``tokenizer_settings``, see
    :func:`~seq2seq_lit.data.tokenizer.build_tokenizers`) and its training pairs filtered by ``max_length``; built
    under ``store_dir`` if there is none yet (or it is damaged), else opened.

    Args:
        progress: show progress bars while building (None: when stderr is a terminal).
        verify: check every file's sha256 (reads the whole store) instead of its sizes only.
        hash_files: key the store by the sha256 of each whole corpus file (``data.store_hash_files``), not by its
            size, modification time and sampled MiBs.

    Raises:
        DataError: a corpus file is missing, unreadable, not UTF-8 or misaligned, or filtering left no training pair.
        ConfigError: bad tokenizer settings.
        OSError: ``store_dir`` cannot be written.
    """
    files = corpus_files(corpus, need_train=tokenizers is None)
    key, material = store_key(files, tokenizer_settings, max_length, tokenizers, hash_files)
    root = check_output_dir("data.store_dir", store_dir, (), fix="pass data.store_dir=<a folder> for the corpus stores")
    path = root / key
    with _store_dir_access(root, path):
        try:
            return CorpusStore.open(path, verify)
        except FileNotFoundError:
            pass
        except DamagedStore as e:
            log.warning("corpus store %s is damaged (%s); building it again", path, e)
        root.mkdir(parents=True, exist_ok=True)  # 0o777 less the umask, as every folder of the store
        lock = FileLock(str(root / f".{key}.lock"), mode=SHARED_FILE_MODE & ~_umask())
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info("another process is building the corpus store %s; waiting for it", path)
            lock.acquire()
    try:
        try:
            return CorpusStore.open(path, verify)  # built by the process we waited for
        except FileNotFoundError:
            pass
        except DamagedStore as e:
            log.warning("corpus store %s is damaged (%s); building it again", path, e)
        for stale in root.glob(f".{key}.tmp-*"):  # left by a killed build (we hold the lock: nobody is writing it)
            shutil.rmtree(stale, ignore_errors=True)
        with _store_dir_access(root, path):
            tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{key}.tmp-"))
            tmp.chmod(SHARED_FOLDER_MODE & ~_umask())  # mkdtemp's 0o700 would hide the store from the group
        try:
            build_store(tmp, files, tokenizer_settings, max_length, tokenizers, material, progress)
            if path.exists():  # the damaged one: out of the way first (a folder cannot be replaced atomically)
                shutil.rmtree(path.rename(root / f".{key}.damaged-{os.getpid()}"))
            tmp.rename(path)
            _fsync_dir(root)
        except OSError as e:
            full = as_full_disk_error(e, path)  # numpy's short write is OSError(None): tell while the disk is full
            shutil.rmtree(tmp, ignore_errors=True)
            if full is not None:
                raise full from e
            if e.filename is None:  # name the store, so that a full disk says which disk (utils.entry's message)
                raise OSError(e.errno, e.strerror, str(path)) from e
            raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        lock.release()
    return CorpusStore.open(path)


SHARED_FOLDER_MODE = 0o777
SHARED_FILE_MODE = 0o666
"""The modes a store's folders and lock file are created with, less the umask (as ``mkdir`` and ``open`` do for its
other files): a cache shared by a group (umask 002, or a setgid folder) is readable and writable by the group."""


def _umask() -> int:
    """This process' umask (read from /proc where it can be, since setting it to read it is not thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def _store_dir_access(root: Path, path: Path) -> Iterator[None]:
    """Turn a permission error on the store folder ``root`` (another user's store or lock, a read-only cache) into a
    :class:`~seq2seq_lit.errors.ConfigError` naming ``data.store_dir``, the key that chose the folder."""
    try:
        yield
    except PermissionError as e:
        what = e.filename or path
        raise ConfigError(
            f"data.store_dir={root}: {what} cannot be used ({e.strerror}); the corpus store {path.name} is "
            f"probably another user's. Fix: ask its owner to make the folder group-readable and -writable (chmod -R "
            f"g+rwX {root}; build shared stores with umask 002), or pass data.store_dir=<a folder of yours>"
        ) from None


def build_store(
    folder: Path,
    files: Mapping[str, tuple[Path, Path]],
    tokenizer_settings: Mapping[str, Any],
    max_length: int | None,
    tokenizers: Tokenizers | None,
    key_material: Mapping[str, Any],
    progress: bool | None = None,
) -> dict[str, Any]:
    """Write the store of ``files`` into the empty ``folder`` (see :func:`open_store`) and return its manifest; every
    file is fsynced, the manifest written last.

    Raises:
        as :func:`open_store`.
    """
    start = time.perf_counter()
    splits: dict[str, Any] = {}
    if "train" in files:
        tokenizers = _build_train(folder, files["train"], tokenizer_settings, max_length, tokenizers, progress, splits)
    assert tokenizers is not None  # corpus_files needs the training files unless tokenizers are given
    sides = (tokenizers.src, tokenizers.tgt)
    for split in ("val", "test"):
        if split in files:
            split_lengths, _ = _encode_split(folder, split, files[split], sides, ".bin", progress)
            for side, side_lengths in zip(SIDES, split_lengths):
                _save(folder / f"{split}.{side}.offsets.npy", _offsets(side_lengths))
            splits[split] = {"pairs": len(split_lengths[0]), "corpus_pairs": len(split_lengths[0])}
    for split, info in splits.items():
        info["dtype"] = _dtype(max(t.vocab_size for t in sides))
        info["tokens"] = [int(np.load(folder / f"{split}.{side}.offsets.npy", mmap_mode="r")[-1]) for side in SIDES]
    state = tokenizers.state_dict()
    models = {"src": "tokenizer.src.model", "tgt": "tokenizer.tgt.model" if state["tgt"] != state["src"] else "tokenizer.src.model"}
    for side in SIDES:
        _write(folder / models[side], state[side])
    manifest = {
        "version": STORE_VERSION,
        "key": dict(key_material),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(time.perf_counter() - start, 1),
        "splits": splits,
        "tokenizers": {
            "joint": state["joint"],
            "src_model": models["src"],
            "tgt_model": models["tgt"],
            "src_vocabulary": state["src_vocabulary"],
            "tgt_vocabulary": state["tgt_vocabulary"],
        },
        "files": {
            p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)} for p in sorted(folder.iterdir())
        },
    }
    _write(folder / MANIFEST, json.dumps(manifest, indent=1).encode())
    _fsync_dir(folder)
    return manifest


def _build_train(
    folder: Path,
    paths: tuple[Path, Path],
    tokenizer_settings: Mapping[str, Any],
    max_length: int | None,
    tokenizers: Tokenizers | None,
    progress: bool | None,
    splits: dict[str, Any],
) -> Tokenizers:
    """Train the tokenizers unless given, encode and filter the training split into ``folder`` and describe it in
    ``splits["train"]``; returns the tokenizers.

    With a joint model and per-side vocabularies, the split is encoded once with the joint model and each side's
    vocabulary is taken from the ids it uses (as :meth:`SentencePieceTokenizer.restricted_to` of all its lines).
    """
    shared = None
    if tokenizers is None:
        settings = dict(tokenizer_settings)
        per_side_vocab = settings.pop("per_side_vocab") and settings["joint"]
        src_lines, tgt_lines = _tokenizer_text(*paths, settings["joint"], settings["input_sentence_size"])
        trained = build_tokenizers(src_lines, tgt_lines, per_side_vocab=False, **settings)
        del src_lines, tgt_lines
        if per_side_vocab:
            shared = trained.src
        else:
            tokenizers = trained
    encoders = (shared, shared) if shared is not None else (tokenizers.src, tokenizers.tgt)  # type: ignore[union-attr]
    lengths, used = _encode_split(folder, "train", paths, encoders, ".raw", progress)
    if shared is not None:
        tokenizers = Tokenizers(
            src=shared.restricted_to_ids(np.flatnonzero(used[0])),
            tgt=shared.restricted_to_ids(np.flatnonzero(used[1])),
            joint=True,
        )
        log.info(
            "per-side vocabularies of the joint model: %d source, %d target pieces",
            tokenizers.src.vocab_size, tokenizers.tgt.vocab_size,
        )
    assert tokenizers is not None
    sides = (tokenizers.src, tokenizers.tgt)
    keep, dropped = _filter(lengths, max_length, paths)
    raw_dtype, dtype = _dtype(max(e.vocab_size for e in encoders)), _dtype(max(t.vocab_size for t in sides))
    for side, tokenizer, side_lengths in zip(SIDES, sides, lengths):
        _compact(folder, f"train.{side}", side_lengths, keep, raw_dtype, dtype, tokenizer if shared is not None else None)
    _save(folder / "train.index.npy", np.flatnonzero(keep))
    splits["train"] = {"pairs": int(keep.sum()), "corpus_pairs": len(keep), "dropped": dropped}
    return tokenizers


def _tokenizer_text(src_path: Path, tgt_path: Path, joint: bool, size: int) -> tuple[list[str], list[str]]:
    """The training lines a tokenizer trains on: all of them when there are at most ``size`` sentences (source and
    target together for a joint model), else the sample of :func:`sample_positions`, read in a second pass."""
    src: list[str] | None = []
    tgt: list[str] | None = []
    num_pairs = 0
    for src_chunk, tgt_chunk in iter_parallel(src_path, tgt_path, _CHUNK_PAIRS):
        num_pairs += len(src_chunk)
        if src is not None and tgt is not None:
            src += src_chunk
            tgt += tgt_chunk
            if (2 if joint else 1) * num_pairs > size:
                src = tgt = None  # too many to keep: sample them in a second pass
    if src is not None and tgt is not None:
        return src, tgt
    if joint:
        positions = sample_positions(2 * num_pairs, size)
        assert positions is not None
        src_positions, tgt_positions = positions[positions < num_pairs], positions[positions >= num_pairs] - num_pairs
    else:
        src_positions = tgt_positions = sample_positions(num_pairs, size)  # type: ignore[assignment]
    log.info("tokenizer: training on %d sentences drawn from %d training pairs", size, num_pairs)
    src, tgt = [], []
    seen = 0
    for src_chunk, tgt_chunk in iter_parallel(src_path, tgt_path, _CHUNK_PAIRS):
        for lines, chunk, positions in ((src, src_chunk, src_positions), (tgt, tgt_chunk, tgt_positions)):
            lo, hi = np.searchsorted(positions, [seen, seen + len(chunk)])
            lines += [chunk[i - seen] for i in positions[lo:hi].tolist()]
        seen += len(src_chunk)
    return src, tgt


def _encode_split(
    folder: Path,
    split: str,
    paths: tuple[Path, Path],
    encoders: tuple[SentencePieceTokenizer, SentencePieceTokenizer],
    suffix: str,
    progress: bool | None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Encode a split's pairs chunk by chunk into ``<split>.<side><suffix>``; ([src, tgt] (N,) lengths, [src, tgt]
    count of each id).

    Each side is encoded word by word through a :class:`~seq2seq_lit.data.word_cache.WordCache` where its model allows
    (the same ids). The chunks are encoded by :func:`_encode_workers` processes and written in corpus order, so the
    files are the same for any number of workers."""
    dtype = _dtype(max(e.vocab_size for e in encoders))
    cached: tuple[Encoder, Encoder] = (WordCache.for_tokenizer(encoders[0]), WordCache.for_tokenizer(encoders[1]))
    workers = _encode_workers(word_cache=all(isinstance(e, WordCache) for e in cached))
    lengths: list[list[np.ndarray]] = [[], []]
    used = [np.zeros(e.vocab_size, dtype=np.int64) for e in encoders]
    outputs = [open(folder / f"{split}.{side}{suffix}", "wb") for side in SIDES]
    bar = tqdm(desc=f"encoding {split}", unit=" pairs", unit_scale=True, disable=None if progress is None else not progress)
    try:
        # closing(): an error or a Ctrl+C in this loop shuts the worker pool down now; left to the garbage collector,
        # the suspended generator would shut it down while the interpreter exits, where that can hang.
        with closing(_encoded_chunks(iter_parallel(*paths, _CHUNK_PAIRS), cached, dtype, workers)) as chunks:
            for encoded in chunks:
                for side, (ids, side_lengths, counts) in enumerate(encoded):
                    ids.tofile(outputs[side])
                    lengths[side].append(side_lengths)
                    used[side] += counts
                bar.update(len(encoded[0][1]))
        for output in outputs:
            output.flush()
            os.fsync(output.fileno())
    finally:
        bar.close()
        for output in outputs:
            output.close()
    return [np.concatenate(side_lengths) for side_lengths in lengths], used


Encoded = tuple[np.ndarray, np.ndarray, np.ndarray]
"""One side of a chunk: (P,) ids in the store's dtype, (n,) int64 lengths, (vocab_size,) int64 count of each id."""


def _encode_workers(word_cache: bool = True) -> int:
    """Processes that encode a split: one per CPU core this process may use (at most 8 with the ``word_cache``), or 1
    (this process, with sentencepiece's threads) on one core, and also on two without the ``word_cache``.

    With the :class:`~seq2seq_lit.data.word_cache.WordCache`, the work is Python's (splitting lines into words,
    looking them up), which only processes run in parallel. Encoding whole lines is sentencepiece's work, which its
    threads run in parallel: there a pool pays only on more than 2 cores, where the reading and converting that the
    threads leave to one core is what limits them (measurements in docs/large-corpora.md).
    """
    cores = _num_threads()
    if not word_cache:
        return cores if cores > 2 else 1
    # Each worker holds two caches of up to ~100 MB. And more would wait for this process: it reads and decodes a
    # chunk in about 0.1 s, which 7 workers take to encode (0.35 s per side, measured on 2 cores).
    return min(cores, _MAX_CACHE_WORKERS)


def _encoded_chunks(
    chunks: Iterable[tuple[list[str], list[str]]],
    encoders: tuple[Encoder, Encoder],
    dtype: str,
    workers: int,
) -> Iterator[tuple[Encoded, Encoded]]:
    """The (source, target) :data:`Encoded` of each chunk of (source lines, target lines), in order.

    With ``workers`` > 1, each side of a chunk is encoded in one of that many processes (a single-threaded
    sentencepiece each) while this one reads the next chunks: sentencepiece's own threads leave the cores idle while
    the text is read and the ids are turned into arrays, and its results come back as Python lists under the GIL. At
    most ``2 * workers`` sides are in flight, which bounds the memory. Without a ``fork`` start method (not Linux), in
    a daemonic process (a ``multiprocessing.Pool`` or data loader worker, which may not start processes), or with one
    worker, this process encodes with sentencepiece's threads.
    """
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods() or multiprocessing.current_process().daemon:
        for chunk in chunks:
            yield tuple(_encode(encoders[side], lines, dtype, None) for side, lines in enumerate(chunk))  # type: ignore[misc]
        return
    # fork: the workers start in milliseconds with the encoders already loaded, and use nothing but sentencepiece and
    # numpy (no torch, no threads of the parent), so the parent's other threads do not matter.
    # Forked with SIGINT blocked, a worker ignores it from its first instruction on (its initializer then unblocks
    # it): a Ctrl+C while it starts would end it in a KeyboardInterrupt traceback. This process gets it on unblocking.
    pool: ProcessPoolExecutor | None = None
    pending: deque[list[Future[Encoded]]] = deque()
    try:
        with _sigint_blocked():  # a Ctrl+C meanwhile is raised when this block ends: the pool is shut down below
            pool = ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("fork"), initializer=_init_worker, initargs=(encoders, os.getpid())
            )
            pool.submit(int)  # starts the workers now (the fork context starts them all at the first task)
        for chunk in chunks:
            pending.append([pool.submit(_encode_in_worker, side, lines, dtype) for side, lines in enumerate(chunk)])
            if len(pending) >= workers:
                yield tuple(f.result() for f in pending.popleft())  # type: ignore[misc]
        while pending:
            yield tuple(f.result() for f in pending.popleft())  # type: ignore[misc]
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _encode(encoder: Encoder, lines: list[str], dtype: str, num_threads: int | None) -> Encoded:
    ids, lengths = encoder.encode_flat(lines, num_threads)
    return ids.astype(dtype), lengths, np.bincount(ids, minlength=encoder.vocab_size)


_worker_encoders: tuple[Encoder, Encoder] | None = None


def _init_worker(encoders: tuple[Encoder, Encoder], parent: int) -> None:
    """Set up an encoding worker: it dies with the process that started it (killed with SIGKILL or SIGTERM, it could
    not shut the pool down, and a worker blocked writing its result to the pipe would live on, holding its memory),
    and it ignores SIGINT (Ctrl+C reaches the whole process group: the parent stops the pool, without a traceback
    from each worker)."""
    global _worker_encoders
    _worker_encoders = encoders
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked by the parent while it forked this one
    die_with_parent(parent)


@contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Block SIGINT in this thread (a Ctrl+C stays pending until the block ends); processes forked meanwhile start
    with it blocked."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when the thread that started it ends (Linux ``PR_SET_PDEATHSIG``); exit
    at once if ``parent`` has already gone. Elsewhere a no-op: the pool's own shutdown is all there is."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux
        return
    if os.getppid() != parent:  # the parent died before prctl: nobody would send the signal
        os._exit(1)


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _encode_in_worker(side: int, lines: list[str], dtype: str) -> Encoded:
    assert _worker_encoders is not None
    return _encode(_worker_encoders[side], lines, dtype, 1)


def _filter(
    lengths: list[np.ndarray], max_length: int | None, paths: tuple[Path, Path]
) -> tuple[np.ndarray, dict[str, int]]:
    """(N,) bool: the training pairs kept (no empty side, no side longer than ``max_length``); the dropped counts."""
    src, tgt = lengths
    empty = (src == 0) | (tgt == 0)
    too_long = ~empty & ((src > max_length) | (tgt > max_length)) if max_length is not None else np.zeros_like(empty)
    keep = ~(empty | too_long)
    dropped = {"empty": int(empty.sum()), "too_long": int(too_long.sum())}
    if not keep.any():
        raise DataError(
            f"no training pair of {paths[0]} / {paths[1]} is left after filtering ({dropped['empty']} with an empty "
            f"side, {dropped['too_long']} longer than max_length={max_length} pieces); fix: raise data.max_length or "
            f"check the files"
        )
    return keep, dropped


def _compact(
    folder: Path,
    name: str,
    lengths: np.ndarray,
    keep: np.ndarray,
    raw_dtype: str,
    dtype: str,
    remap: SentencePieceTokenizer | None,
) -> None:
    """``<name>.raw`` (the ids of all pairs; sentencepiece ids that ``remap`` turns into its own, if given) ->
    ``<name>.bin`` (the ids of the kept pairs) and its offsets; the raw file is removed."""
    raw_file = folder / f"{name}.raw"
    raw = np.memmap(raw_file, dtype=raw_dtype, mode="r") if raw_file.stat().st_size else np.zeros(0, raw_dtype)
    offsets = _offsets(lengths)
    with open(folder / f"{name}.bin", "wb") as out:
        for start in range(0, len(lengths), 20 * _CHUNK_PAIRS):
            stop = min(start + 20 * _CHUNK_PAIRS, len(lengths))
            ids = raw[offsets[start] : offsets[stop]]
            kept = ids[np.repeat(keep[start:stop], lengths[start:stop])]
            (remap.from_spm_ids(kept.astype(np.int32)) if remap is not None else kept).astype(dtype).tofile(out)
        out.flush()
        os.fsync(out.fileno())
    del raw
    raw_file.unlink()
    _save(folder / f"{name}.offsets.npy", _offsets(lengths[keep]))


def _offsets(lengths: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def _dtype(vocab_size: int) -> str:
    return "<u2" if vocab_size <= 1 << 16 else "<i4"


def _save(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, np.ascontiguousarray(array, dtype=np.int64))
        f.flush()
        os.fsync(f.fileno())


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def store_size(path: Path) -> int:
    """Bytes on disk of the store at ``path``."""
    return sum(p.stat().st_size for p in path.iterdir())


def describe(store: CorpusStore) -> Iterable[str]:
    """Summary lines of a store: pairs kept and dropped, tokens, size on disk, where it is."""
    for split, info in store.manifest["splits"].items():
        line = f"{split}: {info['pairs']:,} pairs, {info['tokens'][0]:,} source / {info['tokens'][1]:,} target pieces"
        if "dropped" in info:
            d = info["dropped"]
            line += f" ({d['empty']:,} dropped with an empty side, {d['too_long']:,} longer than max_length)"
        yield line
    yield f"vocabulary: {store.tokenizers.src.vocab_size:,} source / {store.tokenizers.tgt.vocab_size:,} target pieces"
    yield f"size on disk: {store_size(store.path) / 1e6:,.1f} MB at {store.path}"

