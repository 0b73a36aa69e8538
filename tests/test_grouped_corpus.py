"""The derived corpus of consecutive pairs joined into long lines (seq2seq_lit/data/grouped.py, data=multi30k_long)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import hydra
import pytest

from .conftest import compose_train
from seq2seq_lit.data import ParallelText, read_parallel
from seq2seq_lit.data.grouped import Grouped, group_pairs, join_consecutive
from seq2seq_lit.data.store import corpus_files, store_key
from seq2seq_lit.errors import ConfigError

SHARED_MULTI30K = Path(os.environ.get("SEQ2SEQ_DATA_DIR", "/nonexistent")) / "multi30k"


def test_join_consecutive_keeps_the_short_last_chunk():
    lines = ["a", "b", "c", "d", "e"]
    assert join_consecutive(lines, 1) == lines
    assert join_consecutive(lines, 2) == ["a b", "c d", "e"]
    assert join_consecutive(lines, 5) == ["a b c d e"]
    assert join_consecutive(lines, 7) == ["a b c d e"]
    with pytest.raises(ConfigError, match="at least 1"):
        join_consecutive(lines, 0)


def test_group_pairs_uses_every_line_once_per_k_and_records_where_each_k_starts():
    src = [f"s{i}" for i in range(7)]
    tgt = [f"t{i}" for i in range(7)]
    grouped_src, grouped_tgt, groups = group_pairs(src, tgt, 3)
    assert {k: (g["first_line"], g["lines"], g["short_last"]) for k, g in groups.items()} == {
        "1": (0, 7, 0), "2": (7, 4, 1), "3": (11, 3, 1),
    }
    assert len(grouped_src) == len(grouped_tgt) == 7 + 4 + 3
    assert grouped_src[7:11] == ["s0 s1", "s2 s3", "s4 s5", "s6"]
    assert grouped_tgt[11:] == ["t0 t1 t2", "t3 t4 t5", "t6"]
    for k, g in groups.items():  # each source line once per k, in order
        lines = grouped_src[g["first_line"] : g["first_line"] + g["lines"]]
        assert " ".join(lines).split() == src, k
    with pytest.raises(ConfigError, match="max_group"):
        group_pairs(src, tgt, 0)


def _corpus(folder: Path, n: int = 10) -> ParallelText:
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for split in ("train", "val", "test"):
        for side in ("src", "tgt"):
            files[f"{split}_{side}"] = folder / f"{split}.{side}"
            files[f"{split}_{side}"].write_text("".join(f"{split} {side} {i}\n" for i in range(n)))
    return ParallelText(**files)


def test_grouped_files_are_deterministic_and_keyed_by_max_group_and_input(tmp_path):
    inner = _corpus(tmp_path / "plain")
    first, second = Grouped(inner, 4, tmp_path / "a"), Grouped(inner, 4, tmp_path / "b")
    first.prepare()
    second.prepare()
    assert first.folder().name == second.folder().name
    for split in ("train", "val", "test"):
        for a, b in zip(first.paths(split), second.paths(split)):
            assert a.read_bytes() == b.read_bytes()
    src, tgt = read_parallel(*first.paths("test"))
    assert len(src) == 10 + 5 + 4 + 3
    assert src[10] == "test src 0 test src 1" and tgt[-1] == "test tgt 8 test tgt 9"
    groups = json.loads((first.folder() / "groups.json").read_text())
    assert groups["test"]["3"] == {"first_line": 15, "lines": 4, "short_last": 1}

    other_k = Grouped(inner, 3, tmp_path / "a")
    other_k.prepare()
    assert other_k.folder() != first.folder()
    settings = {"vocab_size": 30, "model_type": "bpe"}
    keys = {store_key(corpus_files(c), settings, 100)[0] for c in (inner, first, other_k)}
    assert len(keys) == 3, "the store of a grouped corpus must differ from the plain corpus' and change with K"

    before = first.folder()
    (tmp_path / "plain" / "train.src").write_text("".join(f"changed {i}\n" for i in range(10)))
    assert first.folder() != before, "an edited input must give other files"


def test_max_group_must_be_a_positive_integer(tmp_path):
    for bad in (0, -1, 2.5, True, "4"):
        with pytest.raises(ConfigError, match="data.corpus.max_group"):
            Grouped(_corpus(tmp_path), bad, tmp_path / "g")


def test_multi30k_long_config_composes_with_a_max_length_above_its_longest_pair(tmp_path):
    cfg = compose_train(["data=multi30k_long", "data.corpus.max_group=3"], tmp_path / "run")
    assert cfg.data.corpus.max_group == 3
    assert cfg.data.max_length >= 110  # the longest joined training pair has 109 source pieces (see the config)
    assert cfg.data.corpus.grouped_dir.endswith("multi30k_long")


@pytest.mark.skipif(not (SHARED_MULTI30K / "train.de").is_file(), reason="needs $SEQ2SEQ_DATA_DIR/multi30k (no download in tests)")
def test_multi30k_long_test_split_holds_test_2016_at_one_to_four_captions_per_line(tmp_path):
    cfg = compose_train(["data=multi30k_long"], tmp_path / "run")
    corpus = hydra.utils.instantiate(cfg.data.corpus)
    corpus.prepare()
    src, tgt = read_parallel(*corpus.paths("test"))
    plain_src, plain_tgt = read_parallel(SHARED_MULTI30K / "test_2016_flickr.de", SHARED_MULTI30K / "test_2016_flickr.en")
    assert len(src) == len(tgt) == 1000 + 500 + 334 + 250
    assert src[:1000] == plain_src and tgt[:1000] == plain_tgt
    assert src[1000] == f"{plain_src[0]} {plain_src[1]}"
    assert tgt[-1] == " ".join(plain_tgt[996:])
