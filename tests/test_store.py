"""The corpus store: same batches as the in-memory pipeline, keyed rebuilds, atomic and concurrent builds, damage,
gzip and streaming input, tokenizer sampling."""

from __future__ import annotations

import gzip
import hashlib
import logging
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from seq2seq_lit.data import (
    BucketBatchSampler,
    ParallelText,
    TranslationDataModule,
    TranslationDataset,
    build_tokenizers,
)
from seq2seq_lit.data import store as store_module
from seq2seq_lit.data.arrays import FileArray
from seq2seq_lit.data.corpus import iter_line_blocks, read_parallel
from seq2seq_lit.data.store import open_store
from seq2seq_lit.errors import DataError
from tests.conftest import REPO, run_module, write_reverse_corpus

SETTINGS = {
    "joint": True,
    "per_side_vocab": True,
    "vocab_size": 24,
    "model_type": "bpe",
    "character_coverage": 1.0,
    "input_sentence_size": 1_000_000,
}


def corpus_files(folder: Path, train: int = 1500, seed: int = 7) -> dict[str, Path]:
    """The reverse task, with an empty and an over-long training pair on each side, so filtering drops some."""
    paths = write_reverse_corpus(folder, {"train": train, "val": 60, "test": 50}, seed=seed)
    src = paths["train_src"].read_text().splitlines()
    tgt = paths["train_tgt"].read_text().splitlines()
    src[5], tgt[9] = "", ""
    src[20], tgt[30] = " ".join("abcdefghij" * 3), " ".join("jihgfedcba" * 3)
    paths["train_src"].write_text("\n".join(src) + "\n")
    paths["train_tgt"].write_text("\n".join(tgt) + "\n")
    return paths


def corpus_of(paths: dict[str, Path]) -> ParallelText:
    return ParallelText(**paths)


def settings(tmp_path: Path, **changes) -> dict:
    return {**SETTINGS, "cache_dir": str(tmp_path / "spm"), **changes}


def digest(batches) -> str:
    h = hashlib.sha256()
    for b in batches:
        for t in (b.src, b.src_lengths, b.tgt_in, b.tgt_out, b.indices):
            h.update(t.numpy().tobytes())
            h.update(b"|")
    return h.hexdigest()[:16]


def store_content(store) -> dict:
    """Every array of every split, and the tokenizers' state: what two equal stores share."""
    content = {"tokenizers": store.tokenizers.state_dict()}
    for split in store.splits:
        dataset = store.dataset(split)
        content[split] = [np.asarray(a).tolist() for a in (dataset.src.ids, dataset.src.offsets, dataset.tgt.ids, dataset.tgt.offsets, dataset.indices)]
    return content


# The batches of the data module before the corpus store (commit 524cb96: every split encoded into Python lists),
# on corpus_files(seed=7): epochs 0 and 1 of batch_size=16 and of batch_tokens=120, then val and test.
# sentencepiece 0.2.x; a sentencepiece that trains other pieces changes these.
BATCHES_BEFORE = {
    "sentences": ["48769b0bdf231942", "6d82c2c8d8726614"],
    "tokens": ["7070e9b6c9b0f2cd", "fc2b154f97f068f4"],
    "val": "0b69a2c814150dc8",
    "test": "2a4fc33ee6dfae09",
}


def test_store_gives_the_batches_of_the_in_memory_pipeline(tmp_path: Path) -> None:
    paths = corpus_files(tmp_path)
    found = {}
    for name, extra in {"sentences": {}, "tokens": {"batch_tokens": 120}}.items():
        dm = TranslationDataModule.from_files(
            **paths, tokenizer={"vocab_size": 24, "cache_dir": str(tmp_path / "spm")}, batch_size=16, max_length=12,
            seed=3, store_dir=tmp_path / "store", **extra,
        )
        dm.setup("fit")
        loader = dm.train_dataloader()
        found[name] = [digest(loader), digest(loader)]
        assert dm.num_filtered == {"empty": 2, "too_long": 2}
    found["val"], found["test"] = digest(dm.dataloader("val")), digest(dm.dataloader("test"))
    assert found == BATCHES_BEFORE

    # The same pairs as encoding the lines in memory and filtering them there.
    tokenizers = dm.tokenizers
    src, tgt = read_parallel(paths["train_src"], paths["train_tgt"])
    src_ids, tgt_ids = tokenizers.src.encode_batch(src), tokenizers.tgt.encode_batch(tgt)
    kept = [i for i, (s, t) in enumerate(zip(src_ids, tgt_ids)) if s and t and len(s) <= 12 and len(t) <= 12]
    train = dm.store().dataset("train")
    assert [train[i] for i in range(len(train))] == [(i, src_ids[i], tgt_ids[i]) for i in kept]
    assert tokenizers.state_dict() == build_tokenizers(src, tgt, vocab_size=24, cache_dir=tmp_path / "spm").state_dict()


def test_pool_encoding_writes_the_files_of_single_process_encoding(tmp_path: Path, monkeypatch) -> None:
    # Chunks of 100 pairs: the 1,500 training pairs go through the pool in 15 chunks, out of order if it reorders.
    paths = corpus_files(tmp_path)
    monkeypatch.setattr(store_module, "_CHUNK_PAIRS", 100)
    files = {}
    for workers in (1, 2, 3):
        monkeypatch.setattr(store_module, "_encode_workers", lambda word_cache=True: workers)
        store = open_store(corpus_of(paths), settings(tmp_path), 12, tmp_path / f"store{workers}")
        files[workers] = {p.name: p.read_bytes() for p in store.path.iterdir() if p.name != "manifest.json"}
    assert sorted(files[1]) == sorted(files[2]) == sorted(files[3])
    assert files[1] == files[2] == files[3]


@pytest.mark.parametrize(
    "cores, word_cache, workers", [(1, True, 1), (2, True, 2), (64, True, 8), (2, False, 1), (4, False, 4)]
)
def test_encoding_workers(cores: int, word_cache: bool, workers: int, monkeypatch) -> None:
    # The cache's work is Python's (processes pay from 2 cores, at most 8); whole lines are sentencepiece's (threads).
    monkeypatch.setattr(store_module, "_num_threads", lambda: cores)
    assert store_module._encode_workers(word_cache) == workers


def test_token_arrays_lengths_block_by_block(monkeypatch) -> None:
    from seq2seq_lit.data import arrays as arrays_module

    monkeypatch.setattr(arrays_module, "_BLOCK", 3)  # 10 sentences: blocks of 3, 3, 3 and 1
    lengths = np.array([2, 0, 5, 1, 1, 0, 7, 3, 0, 4])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    arrays = arrays_module.TokenArrays(np.arange(offsets[-1]), offsets)
    assert arrays.lengths.dtype == np.int32 and arrays.lengths.tolist() == lengths.tolist()
    assert arrays[6] == list(range(9, 16))
    decreasing = offsets.copy()
    decreasing[8] = decreasing[6] - 1  # in the third block
    with pytest.raises(ValueError, match="must not decrease"):
        arrays_module.TokenArrays(np.arange(offsets[-1]), decreasing)


def test_file_array_reads_values_and_ranges(tmp_path: Path) -> None:
    import pickle

    values = np.arange(-5, 20, dtype="<i8") * 3
    np.save(tmp_path / "a.npy", values)
    array = FileArray.npy(tmp_path / "a.npy")
    assert len(array) == 25 and array[0] == -15 and array[-1] == 57 and isinstance(array[3], int)
    assert array[4:9].tolist() == values[4:9].tolist() and array[30:40].tolist() == []
    assert np.asarray(array).tolist() == values.tolist()
    assert pickle.loads(pickle.dumps(array))[7] == values[7]
    with pytest.raises(IndexError):
        array[25]
    with pytest.raises(ValueError, match="step 1"):
        array[::2]
    raw = tmp_path / "raw.bin"
    raw.write_bytes(np.arange(10, dtype="<u2").tobytes())
    with pytest.raises(ValueError, match="truncated"):
        FileArray(raw, "<u2", count=11)


def test_reading_every_training_pair_maps_no_store_file(tmp_path: Path) -> None:
    # Read, not mapped: a process's memory does not grow with the pairs it reads (docs/large-corpora.md).
    store = open_store(corpus_of(corpus_files(tmp_path)), settings(tmp_path), 12, tmp_path / "store")
    train = store.dataset("train")
    pairs = [train[i] for i in range(len(train))]
    assert len(pairs) == store.manifest["splits"]["train"]["pairs"]
    smaps = Path("/proc/self/smaps")
    if smaps.exists():
        assert str(store.path) not in smaps.read_text()


def test_store_is_reused_and_rebuilt_when_an_input_changes(tmp_path: Path, monkeypatch) -> None:
    paths = corpus_files(tmp_path)
    builds = []
    build = store_module.build_store
    monkeypatch.setattr(store_module, "build_store", lambda folder, *a, **k: builds.append(folder) or build(folder, *a, **k))

    def path(**changes):
        max_length = changes.pop("max_length", 12)
        return open_store(corpus_of(paths), settings(tmp_path, **changes), max_length, tmp_path / "store").path

    first = path()
    assert path() == first and len(builds) == 1  # nothing changed: reused
    assert path(vocab_size=20) != first and len(builds) == 2  # a tokenizer setting
    assert path(max_length=11) != first and len(builds) == 3  # a filter setting
    assert path(cache_dir=str(tmp_path / "elsewhere")) == first and len(builds) == 3  # where spm models are cached
    with open(paths["val_tgt"], "a") as f:  # an input file (same line count would do: the content sample changes)
        f.write("x\n")
    with open(paths["val_src"], "a") as f:
        f.write("x\n")
    changed = path()
    assert changed != first and len(builds) == 4
    assert open_store(corpus_of(paths), settings(tmp_path), 12, tmp_path / "store").dataset("val").src[-1] != []


def _open_and_digest(args: tuple[dict, str, str]) -> tuple[str, str]:
    paths, cache_dir, store_dir = args
    store = open_store(ParallelText(**paths), {**SETTINGS, "cache_dir": cache_dir}, 12, store_dir)
    return str(store.path), hashlib.sha256(repr(store_content(store)).encode()).hexdigest()


@pytest.mark.slow
def test_two_processes_opening_the_store_at_once_read_the_same_data(tmp_path: Path) -> None:
    paths = corpus_files(tmp_path, train=20_000)
    args = (paths, str(tmp_path / "spm"), str(tmp_path / "store"))
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.map(_open_and_digest, [args, args])
    assert results[0] == results[1]
    entries = [p.name for p in (tmp_path / "store").iterdir()]
    assert [e for e in entries if not e.endswith(".lock")] == [Path(results[0][0]).name]  # one store, no leftovers


KILLED_BUILD = """
import sys, time
from pathlib import Path
from seq2seq_lit.data import ParallelText
from seq2seq_lit.data import store
paths, marker = eval(sys.argv[1]), Path(sys.argv[2])
real = store._compact
def slow(*args, **kwargs):
    real(*args, **kwargs)
    marker.touch()
    time.sleep(600)
store._compact = slow
store.open_store(ParallelText(**paths), eval(sys.argv[3]), 12, sys.argv[4])
"""


@pytest.mark.slow
def test_a_build_killed_midway_leaves_no_store_that_is_used(tmp_path: Path) -> None:
    paths = corpus_files(tmp_path)
    marker, store_dir = tmp_path / "writing", tmp_path / "store"
    args = [repr({k: str(v) for k, v in paths.items()}), str(marker), repr(settings(tmp_path)), str(store_dir)]
    child = subprocess.Popen([sys.executable, "-c", KILLED_BUILD, *args], cwd=REPO)
    try:
        deadline = time.time() + 120
        while not marker.exists():
            assert child.poll() is None and time.time() < deadline, "the build ended before it was killed"
            time.sleep(0.1)
        os.kill(child.pid, signal.SIGKILL)  # midway: the store's first arrays are written
    finally:
        child.kill()
        child.wait()
    assert [p.name for p in store_dir.iterdir() if not p.name.startswith(".")] == []  # nothing a run would open
    store = open_store(corpus_of(paths), settings(tmp_path), 12, store_dir)  # the next build is not blocked
    assert len(store.dataset("train")) == 1496
    assert sorted(p.name for p in store_dir.iterdir() if not p.name.endswith(".lock")) == [store.path.name]


def test_a_failed_build_leaves_nothing_behind(tmp_path: Path) -> None:
    paths = corpus_files(tmp_path)
    paths["test_tgt"].write_text("one line too few\n")
    with pytest.raises(DataError, match="test.src has 50 lines but .*test.tgt has 1 lines"):
        open_store(corpus_of(paths), settings(tmp_path), 12, tmp_path / "store")
    assert [p.name for p in (tmp_path / "store").iterdir() if not p.name.endswith(".lock")] == []


@pytest.mark.parametrize("damage", ["truncate", "manifest", "missing"])
def test_a_damaged_store_is_rebuilt_with_a_warning(tmp_path: Path, caplog, damage: str) -> None:
    paths = corpus_files(tmp_path)
    store = open_store(corpus_of(paths), settings(tmp_path), 12, tmp_path / "store")
    expected = store_content(store)
    del store
    folder = next(p for p in (tmp_path / "store").iterdir() if not p.name.startswith("."))
    if damage == "truncate":
        with open(folder / "train.src.bin", "r+b") as f:
            f.truncate(100)
    elif damage == "manifest":
        (folder / "manifest.json").write_text('{"version": 1, "files": ')
    else:
        (folder / "val.tgt.offsets.npy").unlink()
    with caplog.at_level(logging.WARNING, logger="seq2seq_lit.data.store"):
        again = open_store(corpus_of(paths), settings(tmp_path), 12, tmp_path / "store")
    assert "is damaged" in caplog.text and "building it again" in caplog.text
    assert again.path == folder and store_content(again) == expected


def test_verify_finds_a_changed_byte_that_sizes_miss(tmp_path: Path, caplog) -> None:
    paths = corpus_files(tmp_path)
    store = open_store(corpus_of(paths), settings(tmp_path), 12, tmp_path / "store")
    ids_file = store.path / "train.tgt.bin"
    data = bytearray(ids_file.read_bytes())
    data[10] ^= 1
    del store
    ids_file.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="seq2seq_lit.data.store"):
        open_store(corpus_of(paths), settings(tmp_path), 12, tmp_path / "store")
        assert caplog.text == ""  # opening checks sizes, not contents
        open_store(corpus_of(paths), settings(tmp_path), 12, tmp_path / "store", verify=True)
    assert "does not match its sha256" in caplog.text


def test_gzip_corpus_gives_the_same_store_as_its_plain_text(tmp_path: Path) -> None:
    paths = corpus_files(tmp_path)
    zipped = dict(paths)
    for key in ("train_src", "train_tgt", "val_src"):
        zipped[key] = paths[key].with_name(paths[key].name + ".gz")
        zipped[key].write_bytes(gzip.compress(paths[key].read_bytes()))
    plain = open_store(corpus_of(paths), settings(tmp_path), 12, tmp_path / "store")
    packed = open_store(corpus_of(zipped), settings(tmp_path), 12, tmp_path / "store")
    assert packed.path != plain.path and store_content(packed) == store_content(plain)


def test_bad_utf8_deep_in_a_large_file_names_the_line(tmp_path: Path) -> None:
    paths = corpus_files(tmp_path)
    lines = b"a b c\n" * 2_000_000
    for key in ("train_src", "train_tgt"):
        paths[key].write_bytes(lines + (b"b \xff c\n" if key == "train_src" else b"c b\n") + b"a\n")
    zipped = tmp_path / "train.src.gz"
    zipped.write_bytes(gzip.compress(paths["train_src"].read_bytes(), compresslevel=1))
    for src in (paths["train_src"], zipped):
        with pytest.raises(DataError, match=rf"{src.name}:2000001: invalid UTF-8 at byte 2 of the line \(file offset 12000002"):
            open_store(corpus_of({**paths, "train_src": src}), settings(tmp_path), 12, tmp_path / "store")
    with pytest.raises(DataError, match=r":2000001: invalid UTF-8"):  # across the reader's block boundaries too
        list(iter_line_blocks(paths["train_src"], block_bytes=4096))
    assert [p.name for p in (tmp_path / "store").iterdir() if not p.name.endswith(".lock")] == []


def test_streamed_lines_do_not_depend_on_the_block_size(tmp_path: Path) -> None:
    path = tmp_path / "text"
    text = "\ufeffé one\r\n\ntwo ü\u2028three\n" * 300 + "last without newline"
    path.write_bytes(text.encode())
    expected = text.removeprefix("\ufeff").replace("\r\n", "\n").split("\n")
    for block_bytes in (1, 3, 7, 1000, 1 << 24):
        assert [line for block in iter_line_blocks(path, block_bytes) for line in block] == expected


def test_validation_and_test_are_never_filtered(tmp_path: Path) -> None:
    paths = corpus_files(tmp_path)
    store = open_store(corpus_of(paths), settings(tmp_path), 3, tmp_path / "store")
    assert store.num_filtered["too_long"] > 0
    for split, pairs in (("val", 60), ("test", 50)):
        dataset = store.dataset(split)
        assert len(dataset) == pairs and dataset.indices.tolist() == list(range(pairs))
        assert max(dataset.src_lengths) > 3 and max(dataset.tgt_lengths) > 3


def test_tokenizer_trains_on_a_fixed_sample_of_a_large_corpus(tmp_path: Path) -> None:
    paths = corpus_files(tmp_path, train=3000)
    src, tgt = read_parallel(paths["train_src"], paths["train_tgt"])
    sampled = open_store(corpus_of(paths), settings(tmp_path, input_sentence_size=1000), 12, tmp_path / "store")
    again = open_store(corpus_of(paths), settings(tmp_path / "b", input_sentence_size=1000), 12, tmp_path / "store2")
    whole = open_store(corpus_of(paths), settings(tmp_path), 12, tmp_path / "store")
    # Reproducible (same seed), the same sample as build_tokenizers draws from lines in memory, and not the whole text.
    assert sampled.tokenizers.state_dict() == again.tokenizers.state_dict()
    in_memory = build_tokenizers(src, tgt, vocab_size=24, cache_dir=None, input_sentence_size=1000)
    assert sampled.tokenizers.state_dict() == in_memory.state_dict()
    assert sampled.tokenizers.src.model_bytes != whole.tokenizers.src.model_bytes
    # A corpus no larger than the sample is used whole, in order: the model of all lines.
    assert whole.tokenizers.state_dict() == build_tokenizers(src, tgt, vocab_size=24, cache_dir=None).state_dict()


def test_token_batches_cut_as_the_greedy_rule(tmp_path: Path) -> None:
    rng = random.Random(0)
    for trial in range(30):
        lengths = [rng.choice([0, 1, 2, 5, 9, 30, 70]) for _ in range(rng.randint(1, 600))]
        batch_size, max_tokens = rng.choice([1, 3, 64, 1000]), rng.choice([1, 10, 64, 400])
        sampler = BucketBatchSampler(lengths, batch_size, shuffle=False, max_tokens=max_tokens)
        expected, batch, longest = [], [], 0
        for position in sorted(range(len(lengths)), key=lambda i: (lengths[i], i)):
            grown = max(longest, lengths[position])
            if batch and ((len(batch) + 1) * grown > max_tokens or len(batch) == batch_size):
                expected.append(batch)
                batch, grown = [], lengths[position]
            batch.append(position)
            longest = grown
        expected.append(batch)
        assert sampler.batches(0) == expected, trial


def test_store_dataset_survives_pickling_without_copying_the_arrays(tmp_path: Path) -> None:
    import pickle

    store = open_store(corpus_of(corpus_files(tmp_path)), settings(tmp_path), 12, tmp_path / "store")
    dataset = store.dataset("val")
    assert len(pickle.dumps(dataset.src)) < 500  # the file names, not the pieces
    copy = pickle.loads(pickle.dumps(dataset))
    assert [copy[i] for i in range(len(copy))] == [dataset[i] for i in range(len(dataset))]
    assert isinstance(TranslationDataset(copy.src, copy.tgt).src, type(dataset.src))


@pytest.mark.slow
def test_prepare_builds_once_and_reports(tmp_path: Path) -> None:
    paths = corpus_files(tmp_path)
    args = [
        "data=parallel_text", "data.tokenizer.vocab_size=24", "data.max_length=12", f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={tmp_path / 'run'}", *(f"data.{k}={v}" for k, v in paths.items()),
    ]
    first = run_module("seq2seq_lit.prepare", *args)
    assert first.returncode == 0, first.stderr
    assert "train: 1,496 pairs" in first.stdout and "2 dropped with an empty side, 2 longer than max_length" in first.stdout
    assert f"at {tmp_path / 'cache' / 'corpus_store'}" in first.stdout
    (store,) = [p for p in (tmp_path / "cache" / "corpus_store").iterdir() if not p.name.startswith(".")]
    built = store.stat().st_mtime_ns
    second = run_module("seq2seq_lit.prepare", *args)
    assert second.returncode == 0 and store.stat().st_mtime_ns == built  # opened (and verified), not rebuilt
    paths["val_tgt"].write_text("a\n")
    bad = run_module("seq2seq_lit.prepare", *args)
    assert bad.returncode == 2 and "val.src has 60 lines but" in bad.stderr and "Traceback" not in bad.stderr


def test_training_process_reads_batches_from_the_memory_map(tmp_path: Path) -> None:
    dm = TranslationDataModule.from_files(
        **corpus_files(tmp_path), tokenizer={"vocab_size": 24, "cache_dir": str(tmp_path / "spm")}, max_length=12,
        store_dir=tmp_path / "store",
    )
    dm.prepare_data()
    dm.setup("fit")
    train = dm._dataset("train")
    assert isinstance(train.src.ids, FileArray) and isinstance(train.indices, FileArray)  # no copy in memory
    batch = next(iter(dm.train_dataloader()))
    assert batch.src.dtype == torch.long and len(batch) == 64
