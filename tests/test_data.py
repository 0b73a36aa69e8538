"""Tests of the data layer: reading, downloading, tokenizers, batching and the data module (offline, seconds)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import logging
import pickle
import random
import re
import socket
import threading
from pathlib import Path

import hydra
import lightning as L
import pytest
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.fabric.utilities.data import _set_sampler_epoch
from omegaconf import OmegaConf

from seq2seq_lit.data import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    Batch,
    BucketBatchSampler,
    Multi30k,
    ParallelText,
    SentencePieceTokenizer,
    Tokenizers,
    TranslationDataModule,
    TranslationDataset,
    build_tokenizers,
    collate,
    read_lines,
    read_parallel,
    train_sentencepiece,
)
from seq2seq_lit.data import tokenizer as tokenizer_module
from seq2seq_lit.errors import ConfigError, DataError

SHARED_DATA = Path("/work/shared/data")
SRC_WORDS = "der die das hund katze läuft springt über eine wiese kleiner großer mann frau kind rot blau".split()
TGT_WORDS = "the a dog cat runs jumps over meadow small big man woman child red blue green".split()


def sentences(words: list[str], n: int, seed: int, min_len: int = 2, max_len: int = 9) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(min_len, max_len))) for _ in range(n)]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> SentencePieceTokenizer:
    corpus = sentences(SRC_WORDS, 300, 0) + sentences(TGT_WORDS, 300, 1)
    return train_sentencepiece(corpus, vocab_size=60, cache_dir=tmp_path_factory.mktemp("spm"))


# -- reading -----------------------------------------------------------------------------------------------------


def test_read_lines_strips_only_line_endings(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"a  b \r\n\tc\r\n\nlast\xc2\xa0")
    assert read_lines(path) == ["a  b ", "\tc", "", "last\u00a0"]


def test_read_parallel_line_count_mismatch(tmp_path: Path) -> None:
    src = write_lines(tmp_path / "x.de", ["a", "b", "c"])
    tgt = write_lines(tmp_path / "x.en", ["a", "b"])
    with pytest.raises(DataError) as err:
        read_parallel(src, tgt)
    message = str(err.value)
    assert str(src) in message and str(tgt) in message
    assert "3 lines" in message and "2 lines" in message and "Fix" in message


def test_read_lines_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.txt: file not found.*Fix"):
        read_lines(tmp_path / "nope.txt")


def test_read_lines_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.txt: file is empty \(0 lines\).*Fix"):
        read_lines(tmp_path / "empty.txt")


def test_read_lines_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"ok\nfine line\nbad \xe9 here\n")
    with pytest.raises(DataError) as err:
        read_lines(path)
    message = str(err.value)
    assert message.startswith(f"{path}:3: invalid UTF-8 at byte 4 of the line (file offset 17")
    assert "iconv -f latin1 -t utf-8" in message


# -- download ----------------------------------------------------------------------------------------------------


class _Server:
    """A local HTTP server of the files in ``root``; ``requests`` lists the paths asked for."""

    def __init__(self, root: Path) -> None:
        requests: list[str] = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                requests.append(self.path)
                super().do_GET()

            def log_message(self, *args: object) -> None:
                pass

        self.requests = requests
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/raw"
        # A short poll interval keeps shutdown() fast.
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def multi30k_server(tmp_path: Path):
    """Serves gzipped synthetic Multi30k files; yields (server, {file name: bytes}, {file name: sha256})."""
    (tmp_path / "site" / "raw").mkdir(parents=True)
    files = {}
    for seed, (split, n) in enumerate((("train", 40), ("val", 10), ("test_2016_flickr", 10))):
        for lang, words in (("de", SRC_WORDS), ("en", TGT_WORDS)):
            files[f"{split}.{lang}"] = "".join(s + "\n" for s in sentences(words, n, seed)).encode()
    for name, data in files.items():
        (tmp_path / "site" / "raw" / f"{name}.gz").write_bytes(gzip.compress(data))
    server = _Server(tmp_path / "site")
    yield server, files, {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    server.close()


def test_multi30k_download_verifies_and_caches(tmp_path: Path, multi30k_server, monkeypatch) -> None:
    server, files, digests = multi30k_server
    monkeypatch.delenv("SEQ2SEQ_DATA_DIR", raising=False)
    (tmp_path / "empty").mkdir()
    cache = tmp_path / "cache"

    def corpus() -> Multi30k:
        return Multi30k(data_dir=tmp_path / "empty", cache_dir=cache, base_url=server.url, sha256=digests)

    corpus().prepare()
    assert sorted(server.requests) == sorted(f"/raw/{name}.gz" for name in files)
    assert sorted(p.name for p in cache.iterdir()) == sorted(files)
    for name, data in files.items():
        assert (cache / name).read_bytes() == data
    src, tgt = corpus().paths("test")
    assert (src, tgt) == (cache / "test_2016_flickr.de", cache / "test_2016_flickr.en")
    assert len(read_parallel(src, tgt)[0]) == 10

    corpus().prepare()  # everything cached: no request
    assert len(server.requests) == len(files)

    (cache / "val.en").write_bytes(b"tampered\n")  # wrong checksum: downloaded again
    corpus().prepare()
    assert server.requests[len(files) :] == ["/raw/val.en.gz"]
    assert (cache / "val.en").read_bytes() == files["val.en"]


def test_download_checksum_mismatch(tmp_path: Path, multi30k_server, monkeypatch) -> None:
    server, _, digests = multi30k_server
    monkeypatch.delenv("SEQ2SEQ_DATA_DIR", raising=False)
    wrong = "0" * 64
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as err:
        Multi30k(cache_dir=cache, base_url=server.url, sha256={**digests, "train.de": wrong}).prepare()
    message = str(err.value)
    assert f"{server.url}/train.de.gz" in message
    assert wrong in message and digests["train.de"] in message and "Fix" in message
    assert not cache.exists() or list(cache.iterdir()) == []  # train.de is fetched first: nothing was written


def test_download_network_errors(tmp_path: Path, multi30k_server, monkeypatch) -> None:
    server, _, digests = multi30k_server
    monkeypatch.delenv("SEQ2SEQ_DATA_DIR", raising=False)
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    url = f"http://127.0.0.1:{closed_port}/raw"
    with pytest.raises(DataError, match=rf"{re.escape(url)}/train\.de\.gz.*SEQ2SEQ_DATA_DIR"):
        Multi30k(cache_dir=tmp_path / "c1", base_url=url).prepare()
    not_served = {**digests, "test_2017_flickr.de": "0" * 64, "test_2017_flickr.en": "0" * 64}
    corpus = Multi30k(cache_dir=tmp_path / "c2", base_url=server.url, sha256=not_served, test_split="test_2017_flickr")
    with pytest.raises(DataError, match=r"test_2017_flickr\.de\.gz failed: HTTP 404.*SEQ2SEQ_DATA_DIR"):
        corpus.prepare()
    with pytest.raises(ConfigError, match=r"no sha256 for test_2018_flickr\.de, test_2018_flickr\.en"):
        Multi30k(cache_dir=tmp_path / "c3", base_url=server.url, test_split="test_2018_flickr").prepare()
    assert not (tmp_path / "c3").exists()  # digests are checked before anything is downloaded


def test_multi30k_reads_env_dir_in_place(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "data" / "multi30k"
    folder.mkdir(parents=True)
    for split in ("train", "val", "test_2016_flickr"):
        write_lines(folder / f"{split}.de", ["ein hund", "eine katze"])
        write_lines(folder / f"{split}.en", ["a dog", "a cat"])
    monkeypatch.setenv("SEQ2SEQ_DATA_DIR", str(tmp_path / "data"))
    corpus = Multi30k(cache_dir=tmp_path / "cache", base_url="http://127.0.0.1:9/none")
    corpus.prepare()  # would fail if it tried to download
    assert not (tmp_path / "cache").exists()
    assert corpus.paths("train") == (folder / "train.de", folder / "train.en")
    assert Multi30k("en", "de").paths("test") == (folder / "test_2016_flickr.en", folder / "test_2016_flickr.de")


@pytest.mark.skipif(not (SHARED_DATA / "multi30k" / "train.de").is_file(), reason="no shared Multi30k copy")
def test_multi30k_real_shared_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SEQ2SEQ_DATA_DIR", str(SHARED_DATA))
    corpus = Multi30k(cache_dir=tmp_path / "cache", base_url="http://127.0.0.1:9/none")
    corpus.prepare()
    assert not (tmp_path / "cache").exists()
    src, tgt = read_parallel(*corpus.paths("val"))
    en, de = read_parallel(*Multi30k("en", "de").paths("val"))
    assert len(src) == 1014 and (en, de) == (tgt, src)
    assert corpus.paths("test")[0] == SHARED_DATA / "multi30k" / "test_2016_flickr.de"


def test_multi30k_language_validation() -> None:
    with pytest.raises(ConfigError, match="choose one of de, en"):
        Multi30k(src_lang="fr")
    with pytest.raises(ConfigError, match="both 'en'"):
        Multi30k(src_lang="en", tgt_lang="en")


# -- tokenizer ---------------------------------------------------------------------------------------------------


def test_tokenizer_special_ids_and_round_trip(tokenizer: SentencePieceTokenizer) -> None:
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    assert tokenizer.id_to_pieces([PAD_ID, UNK_ID, BOS_ID, EOS_ID]) == ["<pad>", "<unk>", "<s>", "</s>"]
    assert tokenizer.vocab_size == 60
    text = "der kleiner hund läuft über eine wiese"
    ids = tokenizer.encode(text)
    assert ids and not {PAD_ID, BOS_ID, EOS_ID} & set(ids)
    assert tokenizer.decode(ids) == text
    assert tokenizer.decode(torch.tensor([BOS_ID, *ids, EOS_ID, PAD_ID, PAD_ID])) == text
    assert tokenizer.encode_batch([text, "", "the dog"]) == [ids, [], tokenizer.encode("the dog")]
    assert tokenizer.decode_batch([[BOS_ID, *ids, EOS_ID], []]) == [text, ""]
    assert pickle.loads(pickle.dumps(tokenizer)).encode(text) == ids
    with pytest.raises(DataError, match="not a valid sentencepiece model"):
        SentencePieceTokenizer(b"not a model")


def test_tokenizer_cache_hit_skips_training(tmp_path: Path, monkeypatch) -> None:
    corpus = sentences(TGT_WORDS, 200, 3)
    first = train_sentencepiece(corpus, vocab_size=50, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.model"))) == 1

    def no_training(**kwargs: object) -> None:
        raise AssertionError("trained despite a cached model")

    monkeypatch.setattr(tokenizer_module.spm.SentencePieceTrainer, "train", no_training)
    again = train_sentencepiece(list(corpus), vocab_size=50, cache_dir=tmp_path)
    assert again.model_bytes == first.model_bytes
    with pytest.raises(AssertionError):  # other settings: another cache key
        train_sentencepiece(corpus, vocab_size=51, cache_dir=tmp_path)


def test_tokenizer_vocab_too_large(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"lower data\.tokenizer\.vocab_size to \d+ or less"):
        train_sentencepiece(sentences(TGT_WORDS, 50, 4), vocab_size=5000, cache_dir=tmp_path)


def torch_round_trip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_per_side_vocabularies_keep_only_the_pieces_each_side_uses(tmp_path: Path) -> None:
    src, tgt = sentences(SRC_WORDS, 200, 5), sentences(TGT_WORDS, 200, 6)
    shared = build_tokenizers(src, tgt, joint=True, per_side_vocab=False, vocab_size=60, cache_dir=tmp_path).src
    tokenizers = build_tokenizers(src, tgt, joint=True, per_side_vocab=True, vocab_size=60, cache_dir=tmp_path)
    assert tokenizers.src.vocab_size < 60 and tokenizers.tgt.vocab_size < 60
    assert tokenizers.src.vocabulary[:4] == [PAD_ID, UNK_ID, BOS_ID, EOS_ID]
    for tokenizer, lines in ((tokenizers.src, src), (tokenizers.tgt, tgt)):
        ids = tokenizer.encode_batch(lines)
        assert max(max(row) for row in ids) < tokenizer.vocab_size and UNK_ID not in {i for row in ids for i in row}
        assert [tokenizer.decode(row) for row in ids[:20]] == [shared.decode(shared.encode(line)) for line in lines[:20]]
        assert tokenizer.id_to_pieces(ids[0]) == shared.id_to_pieces(shared.encode(lines[0]))


def test_tokenizers_state_dict_round_trip(tmp_path: Path) -> None:
    src, tgt = sentences(SRC_WORDS, 200, 5), sentences(TGT_WORDS, 200, 6)
    joint = build_tokenizers(src, tgt, joint=True, per_side_vocab=False, vocab_size=60, cache_dir=tmp_path)
    assert joint.src is joint.tgt
    buffer = io.BytesIO()
    torch.save({"tokenizers": joint.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)["tokenizers"]
    assert isinstance(state["joint"], bool) and isinstance(state["src"], bytes)
    restored = Tokenizers.from_state_dict(state)
    assert restored.joint and restored.src is restored.tgt
    assert restored.src.model_bytes == joint.src.model_bytes

    separate = build_tokenizers(src, tgt, joint=False, vocab_size=40, cache_dir=tmp_path)
    restored = Tokenizers.from_state_dict(separate.state_dict())
    assert not restored.joint and restored.src.model_bytes != restored.tgt.model_bytes
    assert restored.tgt.encode("the dog") == separate.tgt.encode("the dog")
    per_side = build_tokenizers(src, tgt, joint=True, per_side_vocab=True, vocab_size=60, cache_dir=tmp_path)
    restored = Tokenizers.from_state_dict(torch_round_trip(per_side.state_dict()))
    assert restored.src.vocabulary == per_side.src.vocabulary and restored.tgt.vocab_size == per_side.tgt.vocab_size
    assert restored.tgt.encode("the dog") == per_side.tgt.encode("the dog")
    with pytest.raises(DataError, match="joint, src and tgt"):
        Tokenizers.from_state_dict({"joint": True})


# -- batching ----------------------------------------------------------------------------------------------------


def test_collate_shapes_and_special_tokens() -> None:
    batch = collate([(5, [10, 11, 12], [20]), (7, [], [21, 22, 23])])
    assert batch.src.tolist() == [[10, 11, 12, EOS_ID], [EOS_ID, PAD_ID, PAD_ID, PAD_ID]]
    assert batch.src_lengths.tolist() == [4, 1]
    assert batch.tgt_in.tolist() == [[BOS_ID, 20, PAD_ID, PAD_ID], [BOS_ID, 21, 22, 23]]
    assert batch.tgt_out.tolist() == [[20, EOS_ID, PAD_ID, PAD_ID], [21, 22, 23, EOS_ID]]
    assert batch.indices.tolist() == [5, 7]
    assert all(t.dtype == torch.long for t in (batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out))
    assert len(batch) == 2 and batch.num_tgt_tokens == 6

    moved = move_data_to_device(batch, "cpu")  # what Lightning does with a batch
    assert isinstance(moved, Batch) and torch.equal(moved.tgt_out, batch.tgt_out)

    sources_only = collate([(0, [4], None), (1, [4, 5], None)])
    assert sources_only.tgt_in is None and sources_only.tgt_out is None and sources_only.num_tgt_tokens == 0
    assert isinstance(sources_only.to("cpu"), Batch)
    with pytest.raises(ValueError):
        collate([(0, [4], None), (1, [4], [5])])


def test_bucket_sampler_covers_each_index_once_in_homogeneous_batches() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(1, 50) for _ in range(1003)]
    sampler = BucketBatchSampler(lengths, batch_size=16, seed=1, bucket_factor=50)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 63
    assert sorted(i for b in batches for i in b) == list(range(1003))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    random_spread = sum(max(lengths[i : i + 16]) - min(lengths[i : i + 16]) for i in range(0, 1003, 16)) / 63
    assert spread < 0.2 * random_spread

    dropping = BucketBatchSampler(lengths, 16, drop_last=True)
    assert len(dropping) == 62 and sorted(len(b) for b in dropping) == [16] * 62

    in_order = BucketBatchSampler(lengths, 16, shuffle=False)
    flat = [i for b in in_order for i in b]
    assert sorted(flat) == list(range(1003)) and [lengths[i] for i in flat] == sorted(lengths)
    assert list(in_order) == list(in_order)  # same order every epoch


def reference_global_batches(lengths: list[int], batch_size: int, bucket_factor: int, seed: int, epoch: int) -> list[list[int]]:
    """The sampler's shuffled batches as the in-memory pipeline made them: a chunk at a time, sorted by length."""
    generator = torch.Generator().manual_seed(seed + epoch)
    perm = torch.randperm(len(lengths), generator=generator).tolist()
    chunk = batch_size * bucket_factor
    order = [i for c in range(0, len(perm), chunk) for i in sorted(perm[c : c + chunk], key=lambda i: lengths[i])]
    batches = [order[b : b + batch_size] for b in range(0, len(order), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


@pytest.mark.parametrize(
    ("num_pairs", "longest", "batch_size", "bucket_factor"),
    [(70_001, 100, 8, 100), (5_003, 70_000, 16, 50), (1_000, 30, 64, 100), (999, 5, 4, 1)],
)
def test_bucket_sampler_orders_as_sorting_each_chunk(num_pairs: int, longest: int, batch_size: int, bucket_factor: int) -> None:
    # Over 65,536 positions, over 65,536 sort keys, one chunk, and many one-batch chunks; stable within equal lengths.
    rng = random.Random(num_pairs)
    lengths = [rng.randint(0, longest) for _ in range(num_pairs)]
    sampler = BucketBatchSampler(lengths, batch_size, seed=2, bucket_factor=bucket_factor)
    for epoch in (0, 1):
        assert sampler.global_batches(epoch) == reference_global_batches(lengths, batch_size, bucket_factor, 2, epoch)


def test_token_based_batches_fill_max_tokens_and_cover_each_index_once() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(1, 50) for _ in range(1003)] + [500]  # one item longer than max_tokens
    sampler = BucketBatchSampler(lengths, batch_size=64, seed=1, bucket_factor=20, max_tokens=400)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert sorted(i for b in batches for i in b) == list(range(1004))
    cost = [len(b) * max(lengths[i] for i in b) for b in batches]
    assert [b for b, c in zip(batches, cost) if c > 400] == [[1003]]  # the long item alone, nothing dropped
    assert max(len(b) for b in batches) == 64  # short sentences: capped by batch_size
    sizes = {max(lengths[i] for i in b) // 10: len(b) for b in batches if len(b) > 1}
    assert sizes[0] > sizes[4]  # short sentences come in larger batches than long ones
    full = [c for b, c in zip(batches, cost) if len(b) < 64 and c <= 400]
    assert sum(full) / len(full) > 0.8 * 400  # batches are filled: little of the budget is left unused
    # data-parallel: every process runs the same number of steps, no item twice
    shares = [BucketBatchSampler(lengths, 64, seed=1, max_tokens=400, num_replicas=2, rank=r).batches(0) for r in (0, 1)]
    assert len(shares[0]) == len(shares[1])
    flat = [i for share in shares for b in share for i in b]
    assert len(flat) == len(set(flat))
    with pytest.raises(ValueError, match="max_tokens"):
        BucketBatchSampler(lengths, 64, max_tokens=0)


def test_bucket_sampler_epochs() -> None:
    lengths = list(range(200))
    sampler = BucketBatchSampler(lengths, batch_size=8, seed=3, bucket_factor=5)
    epoch0, epoch1 = list(sampler), list(sampler)  # each iteration advances the epoch
    assert epoch0 != epoch1
    assert epoch0 == BucketBatchSampler(lengths, 8, seed=3, bucket_factor=5).batches(0)
    assert epoch1 == sampler.batches(1)
    sampler.set_epoch(0)
    assert list(sampler) == epoch0
    loader = torch.utils.data.DataLoader(TranslationDataset([[1]] * 200), batch_sampler=sampler, collate_fn=collate)
    _set_sampler_epoch(loader, 7)  # how Lightning sets the epoch
    assert [b.indices.tolist() for b in loader] == sampler.batches(7)


# -- data module -------------------------------------------------------------------------------------------------


@pytest.fixture
def toy_corpus(tmp_path: Path) -> tuple[ParallelText, dict[str, tuple[list[str], list[str]]]]:
    """202 training pairs, of which index 3 has an empty source and index 7 an over-long target."""
    train_src, train_tgt = sentences(SRC_WORDS, 202, 10), sentences(TGT_WORDS, 202, 11)
    train_src[3] = ""
    train_tgt[7] = " ".join(TGT_WORDS * 10)
    # val and test also hold an empty and an over-long pair, which must not be filtered.
    val_src = ["", " ".join(SRC_WORDS * 10), *sentences(SRC_WORDS, 28, 12)]
    val_tgt = ["", " ".join(TGT_WORDS * 10), *sentences(TGT_WORDS, 28, 13)]
    test = sentences(SRC_WORDS, 25, 14), sentences(TGT_WORDS, 25, 15)
    lines = {"train": (train_src, train_tgt), "val": (val_src, val_tgt), "test": test}
    files = {}
    for split, (src, tgt) in lines.items():
        files[f"{split}_src"] = write_lines(tmp_path / f"{split}.de", src)
        files[f"{split}_tgt"] = write_lines(tmp_path / f"{split}.en", tgt)
    return ParallelText(**files), lines


def make_module(corpus: ParallelText, cache: Path, **kwargs: object) -> TranslationDataModule:
    options = dict(tokenizer={"vocab_size": 60, "cache_dir": cache}, batch_size=16, eval_batch_size=12, max_length=60)
    return TranslationDataModule(corpus, **{**options, **kwargs})


def test_datamodule_filters_training_pairs_only(toy_corpus, tmp_path: Path, caplog) -> None:
    corpus, lines = toy_corpus
    dm = make_module(corpus, tmp_path / "spm")
    with caplog.at_level(logging.INFO, logger="seq2seq_lit.data.datamodule"):
        dm.prepare_data()  # builds the corpus store
        dm.setup("fit")
    assert dm.num_filtered == {"empty": 1, "too_long": 1}
    assert "dropped 2 of 202 training pairs" in caplog.text
    train = dm._datasets["train"]
    dm.setup("fit")  # idempotent
    assert dm._datasets["train"] is train
    assert dm.src_vocab_size < 60 and dm.tgt_vocab_size < 60 and dm.tokenizers.joint
    assert (dm.pad_id, dm.bos_id, dm.eos_id) == (PAD_ID, BOS_ID, EOS_ID)

    seen = [i for b in dm.train_dataloader() for i in b.indices.tolist()]
    assert sorted(seen) == [i for i in range(202) if i not in (3, 7)]
    assert seen != [i for b in dm.train_dataloader() for i in b.indices.tolist()]  # a new order each epoch
    assert all(isinstance(b, Batch) and len(b) <= 16 for b in dm.train_dataloader())
    assert dm.sources("train") == lines["train"][0]  # raw lines stay unfiltered


@pytest.mark.parametrize("split", ["val", "test"])
def test_datamodule_eval_batches_restore_corpus_order(toy_corpus, tmp_path: Path, split: str) -> None:
    corpus, lines = toy_corpus
    dm = make_module(corpus, tmp_path / "spm")
    dm.setup("fit" if split == "val" else "test")
    loader = dm.val_dataloader() if split == "val" else dm.test_dataloader()
    src, refs = {}, {}
    for batch in loader:
        assert isinstance(batch, Batch) and len(batch) <= 12
        for i, s, t in zip(batch.indices.tolist(), batch.src, batch.tgt_out):
            src[i], refs[i] = dm.tokenizers.src.decode(s), dm.tokenizers.tgt.decode(t)
    assert len(src) == len(lines[split][0])  # nothing filtered, even the empty and the over-long pair
    assert [src[i] for i in range(len(src))] == dm.sources(split) == lines[split][0]
    assert [refs[i] for i in range(len(refs))] == dm.references(split) == lines[split][1]


def test_datamodule_with_given_tokenizers_and_errors(toy_corpus, tmp_path: Path) -> None:
    corpus, _ = toy_corpus
    trained = make_module(corpus, tmp_path / "spm", tokenizer={"vocab_size": 60, "joint": False, "cache_dir": tmp_path})
    state = trained.tokenizers.state_dict()
    assert not state["joint"]

    (tmp_path / "train.de").unlink()  # with tokenizers from a checkpoint, testing does not need the training split
    dm = make_module(corpus, tmp_path / "spm")
    dm.tokenizers = Tokenizers.from_state_dict(state)
    dm.setup("test")
    assert sum(len(b) for b in dm.test_dataloader()) == 25
    with pytest.raises(RuntimeError):
        dm.tokenizers = trained.tokenizers
    with pytest.raises(DataError, match="train.de: file not found"):
        dm.setup("fit")

    no_test = ParallelText(*corpus.paths("train"), *corpus.paths("val"))
    with pytest.raises(DataError, match=r"set data\.test_src and data\.test_tgt"):
        make_module(no_test, tmp_path / "spm").test_dataloader()
    with pytest.raises(ConfigError, match="unknown data.tokenizer setting"):
        TranslationDataModule(corpus, tokenizer={"vocab": 8000})
    with pytest.raises(ConfigError, match="data.batch_size"):
        TranslationDataModule(corpus, batch_size=0)
    with pytest.raises(ConfigError, match="data.batch_tokens=0"):
        TranslationDataModule(corpus, batch_tokens=0)
    with pytest.raises(ConfigError, match="corpus has src_lang='de'"):
        TranslationDataModule(Multi30k("de", "en"), src_lang="en", tgt_lang="de")


def test_datamodule_in_lightning_fit(toy_corpus, tmp_path: Path) -> None:
    """Lightning moves Batch objects and sets the sampler's epoch: two epochs see two different orders."""
    corpus, _ = toy_corpus
    dm = make_module(corpus, tmp_path / "spm")

    class Recorder(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))
            self.orders: dict[int, list[list[int]]] = {}

        def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
            assert isinstance(batch, Batch)
            self.orders.setdefault(self.current_epoch, []).append(batch.indices.tolist())
            return self.weight.sum() * batch.num_tgt_tokens

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    model = Recorder()
    trainer = L.Trainer(
        max_epochs=2,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=dm)
    positions = dm._datasets["train"].indices  # the sampler yields dataset positions, batches carry corpus indices
    for epoch in (0, 1):
        assert model.orders[epoch] == [[positions[p] for p in b] for b in dm._train_sampler.batches(epoch)]
    assert model.orders[0] != model.orders[1]


def test_hydra_instantiation(toy_corpus, tmp_path: Path) -> None:
    """Hydra passes nested settings as DictConfig; the flat from_files config builds a ParallelText."""
    corpus, lines = toy_corpus
    files = {
        f"{split}_{side}": str(path)
        for split in ("train", "val", "test")
        for side, path in zip(("src", "tgt"), corpus.paths(split))
    }
    config = OmegaConf.create(
        {
            "_target_": "seq2seq_lit.data.TranslationDataModule.from_files",
            **files,
            "src_lang": "src",
            "tgt_lang": "tgt",
            "tokenizer": {"joint": False, "vocab_size": 60, "cache_dir": str(tmp_path / "spm")},
            "batch_size": 16,
        }
    )
    dm = hydra.utils.instantiate(config)
    dm.setup("test")
    assert not dm.tokenizers.joint and dm.references("test") == lines["test"][1]
    multi30k = hydra.utils.instantiate({"_target_": "seq2seq_lit.data.Multi30k", "sha256": {"x.de": "ab"}})
    assert multi30k.sha256["x.de"] == "ab" and multi30k.sha256["train.de"].startswith("2c2b73")
