"""Corpora read in place from $SEQ2SEQ_DATA_DIR (data=wmt_news_deen) and concatenated corpora (data=multi30k_wmt_news)."""

import pytest

from seq2seq_lit.data.local_corpus import Concatenated, LocalCorpus, wmt_news_deen
from seq2seq_lit.errors import ConfigError, DataError


def make_folder(root, name, lines):
    folder = root / name
    folder.mkdir(parents=True)
    for split in ("train", "val", "test"):
        for lang in ("de", "en"):
            (folder / f"{split}.{lang}").write_text("".join(f"{name} {split} {lang} {k}\n" for k in range(lines)))
    return folder


def test_wmt_news_deen_is_found_through_the_data_dir_variable(tmp_path, monkeypatch):
    make_folder(tmp_path, "wmt_news_deen", 2)
    monkeypatch.setenv("SEQ2SEQ_DATA_DIR", str(tmp_path))
    corpus = wmt_news_deen("en", "de")
    corpus.prepare()  # checksums differ from the real files: a warning, not an error
    assert corpus.paths("val") == (tmp_path / "wmt_news_deen" / "val.en", tmp_path / "wmt_news_deen" / "val.de")


def test_a_missing_folder_or_variable_says_how_to_fix_it(tmp_path, monkeypatch):
    monkeypatch.delenv("SEQ2SEQ_DATA_DIR", raising=False)
    with pytest.raises(ConfigError, match="no download URL and SEQ2SEQ_DATA_DIR is not set; fix: set SEQ2SEQ_DATA_DIR=DIR"):
        wmt_news_deen().prepare()
    monkeypatch.setenv("SEQ2SEQ_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match=rf"{tmp_path / 'wmt_news_deen'}: corpus 'wmt_news_deen' lacks train.de"):
        wmt_news_deen().prepare()
    with pytest.raises(ConfigError, match="choose de or en"):
        wmt_news_deen("fr", "en")


def test_concatenated_corpora_train_on_all_and_evaluate_on_the_first(tmp_path):
    news = LocalCorpus("news", "de", "en", make_folder(tmp_path, "news", 2))
    captions = LocalCorpus("captions", "de", "en", make_folder(tmp_path, "captions", 3))
    corpus = Concatenated([news, captions], tmp_path / "cache")
    corpus.prepare()
    src, tgt = corpus.paths("train")
    assert src.read_text().splitlines() == [f"news train de {k}" for k in range(2)] + [f"captions train de {k}" for k in range(3)]
    assert len(tgt.read_text().splitlines()) == 5
    assert corpus.paths("test") == news.paths("test")
    with pytest.raises(ConfigError, match="fix: use corpora of one language pair"):
        Concatenated([news, LocalCorpus("x", "en", "de", tmp_path)], tmp_path / "cache")
