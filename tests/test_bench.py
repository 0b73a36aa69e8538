"""The benchmark's FLOP count against PyTorch's, and the benchmark script end to end (figures checked for shape and
consistency only: no assertion here depends on how fast the machine is)."""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from seq2seq_lit.data.batching import collate
from seq2seq_lit.modules import DotAttention, GeneralAttention, LuongDecoder, NoAttention, RNNEncoder, Seq2Seq

from .conftest import TINY, reverse_data_overrides

BENCH = Path(__file__).resolve().parents[1] / "bench" / "train_decode.py"
sys.path.insert(0, str(BENCH.parent))  # bench/flops.py, as the bench script imports it
from flops import counted_step_flops, matmul_gflops, training_step_flops  # noqa: E402


def _tiny_net(rnn_type: str, layers: int, attention, input_feeding: bool, bridge: str = "last") -> Seq2Seq:
    torch.manual_seed(0)
    return Seq2Seq(
        37,
        41,
        encoder=functools.partial(RNNEncoder, hidden_size=16, num_layers=layers, rnn_type=rnn_type),
        decoder=functools.partial(
            LuongDecoder, hidden_size=32, num_layers=layers, rnn_type=rnn_type, input_feeding=input_feeding
        ),
        attention=attention,
        embedding_size=8,
        bridge=bridge,
    )


def _ragged_batch():
    # 5 pairs, sources of 3-11 pieces and targets of 9-5: padding on both sides
    examples = [
        (i, [5 + (j * 7 + i) % 30 for j in range(3 + 2 * i)], [6 + (j + i) % 30 for j in range(9 - i)]) for i in range(5)
    ]
    return collate(examples)


@pytest.mark.parametrize(
    "rnn_type, layers, attention, input_feeding, bridge",
    [
        ("lstm", 1, GeneralAttention, True, "last"),  # the reference configuration's shape
        ("lstm", 1, GeneralAttention, False, "last"),  # one-call unroll
        ("gru", 2, GeneralAttention, True, "learned"),
        ("lstm", 1, DotAttention, True, "last"),
        ("lstm", 1, NoAttention, False, "last"),
    ],
)
def test_analytic_step_flops_agree_with_torch_flop_counter(rnn_type, layers, attention, input_feeding, bridge):
    net = _tiny_net(rnn_type, layers, attention, input_feeding, bridge)
    batch = _ragged_batch()
    analytic = training_step_flops(net, batch.src_lengths, (batch.tgt_out != 0).sum(1))
    counted = counted_step_flops(net, batch, pad_id=0)
    assert analytic.total == pytest.approx(counted, rel=0.03)


def test_useful_flops_count_real_tokens_only():
    net = _tiny_net("lstm", 1, GeneralAttention, True)
    batch = _ragged_batch()
    tgt_lengths = (batch.tgt_out != 0).sum(1)
    padded = training_step_flops(net, batch.src_lengths, tgt_lengths)
    useful = training_step_flops(net, batch.src_lengths, tgt_lengths, padded=False)
    assert useful.forward["encoder"] == padded.forward["encoder"]  # packed: padding never computed
    assert useful.forward["generator"] * batch.tgt_out.numel() == padded.forward["generator"] * int(tgt_lengths.sum())
    assert useful.total < padded.total


def test_matmul_gflops_is_positive():
    assert matmul_gflops(torch.float32, size=64, seconds=0.01) > 0


@pytest.mark.slow
def test_bench_script_runs_end_to_end(reverse_corpus, tmp_path):
    bench = _load_bench()
    overrides = [o for o in TINY if not o.startswith(("trainer.enable", "callbacks."))]
    overrides += reverse_data_overrides(reverse_corpus) + [f"paths.cache_dir={tmp_path / 'cache'}"]
    out = tmp_path / "figures.json"
    figures = bench.main(
        ["--steps", "2", "--warmup", "1", "--input-feeding", "on", "--decode", "--decode-limit", "8",
         "--peak-seconds", "0.05", "--json", str(out), *overrides]
    )
    assert out.is_file()
    (row,) = figures["training"]
    assert row["steps"] == 2 and row["input_feeding"] and row["precision"] == "32"
    assert row["tokens"] > 0 and row["flops_per_step"] > 0 and row["peak_rss_mib"] > 0
    assert row["check_batch_flops_analytic_padded"] == pytest.approx(row["check_batch_flops_torch"], rel=0.05)
    assert figures["decode"]["sentences"] == 8 and not figures["decode"]["trained"]
    assert {"greedy", "beam5", "greedy_int8", "beam5_int8"} <= figures["decode"].keys()  # a CPU decodes both ways
    assert figures["decode"]["quantize"] == ["none", "int8"] and "greedy, int8" in bench.format_report(figures)


ONMT_OUTPUT = """== train STEPS=300
[2026-11-21 11:57:23,937 INFO] Step 300/  300; acc: 39.8; ppl:  44.8; xent: 3.8; lr: 0.00100; sents:    3200
steps 50->300: s/step=0.3052 src+tgt tok/s=6069 (src 2973, tgt 3096) sents/s=209.7 avg_tok/batch=1852
wall_s=100.3 peak_rss_MiB=1220
== translate beam=1
  translation_s=3.0 sents/s=333.3 (Tokens per second: 3965.4 output pieces)
  wall_s=7.5 peak_rss_MiB=481
  BLEU 14.13
== translate beam=5
  translation_s=4.9 sents/s=204.1 (Tokens per second: 2201.6 output pieces)
  wall_s=9.0 peak_rss_MiB=515
  BLEU 14.17
"""


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_train_decode", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_peer_figures_are_read_from_the_script_output_and_set_next_to_ours():
    bench = _load_bench()
    from peers import PeerError, parse_output, run_peer  # on the path once the bench is loaded

    peer = {"steps": 300, **parse_output("onmt", ONMT_OUTPUT)}
    assert peer["s_per_step"] == 0.3052 and peer["tokens_per_s"] == 6069 and peer["peak_rss_mib"] == 1220
    assert peer["greedy"] == {"sentences_per_s": 333.3, "bleu": 14.13}
    assert peer["beam5"] == {"sentences_per_s": 204.1, "bleu": 14.17}
    ours = {"input_feeding": True, "precision": "32", "tokens_per_s": 7586.25}
    decode = {"greedy": {"sentences_per_s": 666.6, "bleu": 40.0}, "beam5": {"sentences_per_s": 204.1, "bleu": 41.0},
              "beam5_int8": {"sentences_per_s": 408.2, "bleu": 40.9}}
    text = "\n".join(bench.format_side_by_side({"training": [ours], "decode": decode, "peers": {"onmt": peer}}))
    assert "OpenNMT-py 3.5.1 (300 steps)" in text
    assert "input feeding on: 1.25x tokens/s (7,586 vs 6,069)" in text
    assert "decoding greedy: 2.00x sentences/s" in text and "decoding beam 5: 1.00x" in text
    assert "decoding beam 5, int8: 2.00x sentences/s (408 vs 204; BLEU 40.90 vs 14.17)" in text
    with pytest.raises(PeerError, match="no beam5 BLEU"):
        parse_output("onmt", ONMT_OUTPUT.rsplit("  BLEU", 1)[0])
    with pytest.raises(PeerError, match="choose from onmt, joey"):
        run_peer("fairseq", Path("."), 10)
    with pytest.raises(PeerError, match="not found; fix: pass --peers-dir"):
        run_peer("onmt", Path("/nonexistent"), 10)


def test_store_formats_read_the_same_pieces_in_every_format(tmp_path):
    # bench/store_formats.py: the formats must hold and hand out the same pairs for its timings to compare anything.
    pytest.importorskip("datasets")
    import numpy as np
    import store_formats

    rng = np.random.default_rng(0)
    sides = []
    for _ in store_formats.SIDES:
        offsets = np.concatenate([[0], np.cumsum(rng.integers(0, 9, 300))])
        sides.append((rng.integers(0, 8000, offsets[-1]).astype(np.uint16), offsets))
    order = rng.permutation(300)
    batches = [order[i : i + store_formats.BATCH] for i in range(0, 300, store_formats.BATCH)]
    figures = {}
    for fmt in ("numpy", "datasets"):
        store_formats.WRITERS[fmt](sides, tmp_path / fmt)
        figures[fmt] = store_formats.READERS[fmt](tmp_path / fmt, batches)
    expected = int(sum(offsets[-1] for _, offsets in sides))
    assert figures["numpy"]["pieces"] == figures["datasets"]["pieces"] == expected
    assert figures["numpy"]["pairs"] == figures["datasets"]["pairs"] == 300


def test_data_memory_reports_every_stage(tmp_path, monkeypatch, capsys):
    import json

    import data_memory

    monkeypatch.setattr(sys, "argv", ["data_memory.py", "--pairs", "5000", "--workdir", str(tmp_path)])
    data_memory.main()
    figures = json.loads(capsys.readouterr().out)
    assert figures["pairs"] == 5000
    assert list(figures["stages"]) == ["open", "sampler + epoch 0 ordered", "epoch 1 ordered"]
