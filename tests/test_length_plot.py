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


def test_the_buckets_of_an_s2s_eval_metrics_file_are_read_shortest_first():
    metrics = {"bleu": 20.0, "bleu_by_source_length": {"61+": {"bleu": 3.0, "sentences": 4, "length_ratio": 0.8},
                                                       "1-10": {"bleu": 9.0, "sentences": 7, "length_ratio": 1.0}}}
    assert length_buckets_of(metrics) == [("1-10", 9.0, 7), ("61+", 3.0, 4)]


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


def test_plot_length_of_s2s_eval_runs_names_each_line_by_its_folder(tmp_path, monkeypatch, capsys):
    """s2s-eval runs of two checkpoints differ only in ckpt_path: the legend names their folders, not the paths."""
    drawn = {}
    monkeypatch.setattr("seq2seq_lit.plots.length.plot_bleu_by_length", lambda curves, path: drawn.update(curves))
    for name, bleus in (("none-1200", [10.0, 2.0]), ("none-2400", [14.0, 3.0])):
        buckets = {label: {"bleu": b, "sentences": 5, "length_ratio": 1.0} for label, b in zip(["1-10", "11+"], bleus)}
        make_run(tmp_path / name, [f"ckpt_path=/long/path/{name}.ckpt"], {"bleu": 9.0, "bleu_by_source_length": buckets})
    assert main([str(tmp_path), "--metrics", "bleu", "--plot-length", str(tmp_path / "x.png")]) == 0
    assert sorted(drawn) == ["none-1200", "none-2400"]
    assert length_buckets_of(drawn["none-2400"]) == [("1-10", 14.0, 5), ("11+", 3.0, 5)]


def test_plot_gradients_draws_every_gradient_table_below_the_paths(tmp_path, capsys):
    for name, decay in (("none", 0.1), ("general", 0.9)):
        folder = tmp_path / "gradients" / name
        folder.mkdir(parents=True)
        rows = [f"{k},10,{decay ** k},{decay ** (5 - k)}" for k in range(6)]
        (folder / "gradients.csv").write_text("offset,sentences,from_end,from_start\n" + "\n".join(rows) + "\n")
    png = tmp_path / "gradients.png"
    assert main([str(tmp_path / "gradients"), "--plot-gradients", str(png)]) == 0
    assert Image.open(png).size == (1000, 400)
    assert "gradient plot of 2 models written to" in capsys.readouterr().out
    (tmp_path / "gradients" / "general" / "gradients.csv").write_text("a,b\n1,2\n")
    with pytest.raises(SystemExit):
        main([str(tmp_path / "gradients"), "--plot-gradients", str(tmp_path / "again.png")])
    assert "not a table of s2s-gradients" in capsys.readouterr().err
