"""BLEU by source length: configurable buckets, and the s2s-compare --plot-length line plot (PNG, W&B image)."""

import pytest
from PIL import Image

from seq2seq_lit.compare import main
from seq2seq_lit.errors import ConfigError
from seq2seq_lit.metrics import bleu_by_source_length, length_buckets
from seq2seq_lit.plots.length import length_buckets_of

from .test_compare import make_run


def test_length_buckets_come_from_increasing_upper_edges():
    assert length_buckets([10, 20]) == [("1-10", 1, 10), ("11-20", 11, 20), ("21+", 21, 10**9)]
    assert [label for label, _, _ in length_buckets()] == ["1-10", "11-20", "21-30", "31-40", "41-50", "51+"]
    for bad in ([20, 10], [0, 5], [10, 10], [1.5]):
        with pytest.raises(ConfigError, match="fix: give increasing positive word counts"):
            length_buckets(bad)


def test_bleu_by_source_length_uses_the_given_edges():
    sources = ["a b", " ".join(["w"] * 12), " ".join(["w"] * 60)]
    refs = ["one two three four", "five six seven eight", "nine ten eleven twelve"]
    buckets = bleu_by_source_length(sources, refs, refs, edges=[5, 50])
    assert {k: v["sentences"] for k, v in buckets.items()} == {"1-5": 1, "6-50": 1, "51+": 1}
    assert all(v["bleu"] == pytest.approx(100.0) for v in buckets.values())


def bucket_metrics(bleus):
    labels = ["1-10", "11-20", "21+"]
    metrics = {f"test/bleu_src_len_{label}": bleu for label, bleu in zip(labels, bleus)}
    metrics.update({f"test/sentences_src_len_{label}": 5 for label in labels})
    return metrics


def test_bucket_metrics_are_read_shortest_first():
    metrics = {"test/bleu_src_len_21+": 3.0, "test/bleu_src_len_1-10": 9.0, "test/sentences_src_len_1-10": 7, "test/bleu": 5}
    assert length_buckets_of(metrics) == [("1-10", 9.0, 7), ("21+", 3.0, None)]


def test_plot_length_draws_one_line_per_run_and_logs_a_wandb_image(tmp_path, capsys):
    make_run(tmp_path / "none", ["model/attention=none"], bucket_metrics([10.0, 6.0, 2.0]))
    make_run(tmp_path / "general", ["model/attention=general"], bucket_metrics([11.0, 9.0, 7.0]))
    png = tmp_path / "length.png"
    assert main([str(tmp_path), "--plot-length", str(png), "--wandb-project", "length-test"]) == 0
    assert Image.open(png).size == (600, 400)
    assert "length plot written to" in capsys.readouterr().out
    assert list((tmp_path / "wandb").glob("offline-run-*/files/media/images/bleu_by_source_length_*.png"))


def test_plot_length_without_bucket_metrics_is_a_usage_error(tmp_path, capsys):
    make_run(tmp_path / "0", ["model/attention=none"], {"test/bleu": 1.0})
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--plot-length", str(tmp_path / "x.png")])
    assert "no run has test/bleu_src_len_* metrics" in capsys.readouterr().err
