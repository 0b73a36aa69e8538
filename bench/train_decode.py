"""Training and decoding speed of the reference configuration, next to the machine's limit.

    SEQ2SEQ_DATA_DIR=../shared/data .venv/bin/python bench/train_decode.py [--steps N] [--warmup W]
        [--input-feeding both|on|off] [--precision 32|bf16-mixed|both] [--decode [--ckpt PATH] [--quantize
        none|int8|both]] [--json PATH]
        [--peers onmt,joey [--peer-steps N]] [HYDRA_OVERRIDE ...]

A benchmark that prints figures, not a test: nothing here passes or fails on speed.

Configuration: ``conf/train.yaml`` composed with ``experiment=bench_reference`` (the model the peers are measured
with, see that file), then ``model.decoder.input_feeding`` and ``trainer.precision`` per row, then the overrides
given on the command line (e.g. ``data.batch_size=128``, or ``data=parallel_text data.train_src=...`` for another
corpus). Multi30k is read from ``$SEQ2SEQ_DATA_DIR/multi30k`` (else downloaded, as for training).

Figures, each configuration in its own process (so that peak RSS is that configuration's, and the oneDNN ISA cap that
CPU bfloat16 may need is set before any other oneDNN work):

- **matmul peak**: GFLOP/s of a 2048 x 2048 matrix product in float32 and bfloat16 on the training device, the best
  of repeated runs over one second (on CPUs that list AMX but fault on it, bfloat16 runs with
  ``ONEDNN_MAX_CPU_ISA=AVX512_CORE_FP16``, see ``seq2seq_lit/utils/precision.py``).
- **training**: Lightning's ``Trainer.fit`` on real shuffled, length-bucketed batches, ``--warmup`` steps untimed and
  then ``--steps`` timed. A step is timed from ``on_train_batch_start`` to ``on_train_batch_end``: forward, loss,
  backward, gradient clipping, Adam and Lightning's logging; not the DataLoader's collation before it ("loop s/step",
  end of one step to the end of the next, includes it). No validation, checkpoints or loggers.
  ``s/step`` and ``tokens/s`` (non-pad source + target tokens, EOS included, per timed second), each with its
  **limit**: the step's useful FLOPs divided by the measured matmul peak (the time the arithmetic alone would take at
  peak; tokens/s likewise), and the **fraction of peak** = limit / measured.
  FLOPs per step are counted analytically from the layer sizes and each batch's real token counts
  (``bench/flops.py``: matrix products only, backward = 2x forward), and cross-checked on one batch
  against ``torch.utils.flop_counter.FlopCounterMode``, which counts the padded positions the step actually computes
  (so the analytic count is compared in its padded form).
- **peak RSS**: ``ru_maxrss`` of the configuration's process after training (model, data, optimizer state, allocator).
- **decoding** (``--decode``): test_2016_flickr (1,000 sentences) translated with greedy search and beam 5 (GNMT
  length penalty ``--beam-alpha``, default 1.0 as the peers' ``-length_penalty wu -alpha 1.0``) in batches of
  ``--decode-batch`` sentences (default 64, as the peers'), timed around ``translate_lines`` (encoding, search,
  detokenization), with BLEU. With ``--ckpt`` the checkpoint's model; without, an untrained model of the configuration
  (input feeding on), which emits no EOS and decodes every sentence to the length cap: speeds then are a lower bound
  and BLEU is meaningless (the table says so). ``--quantize``: with the float32 model (``none``), its dynamic int8
  copy (``int8``, CPU only, ``seq2seq_lit/inference/quantization.py``, as ``quantize=int8`` in translate and evaluate) or both
  (default on a CPU).

- **peers** (``--peers onmt,joey``): after the figures above, in the same run, OpenNMT-py and/or JoeyNMT train the
  same model on the same data and batch for ``--peer-steps`` steps and decode the test split, through the scripts in
  ``--peers-dir`` (``bench/peers.py``); the table then sets each training and decoding figure of seq2seq-lit next to
  theirs, with the ratio. Install them once with ``bash ../shared/peers/setup.sh``.

``--json PATH`` writes every figure. Speeds depend on what else the machine runs; measure on a quiet one.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch  # importing runs no oneDNN operation: the ISA cap can still be set in the children

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/peers.py, also when loaded by path (tests)
from peers import run_peer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"
EXPERIMENT = "experiment=bench_reference"
MATMUL_SIZE = 2048


# -- configuration ---------------------------------------------------------------------------------------------------


def compose(overrides: list[str], output_dir: Path):
    """``conf/train.yaml`` with ``experiment=bench_reference`` and ``overrides``, its run folder at ``output_dir``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name="train.yaml", overrides=[EXPERIMENT, *overrides], return_hydra_config=True)
        HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir / "logs")
    return cfg


def device_of(cfg) -> str:
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    return "cuda" if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available() else "cpu"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _quiet() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "seq2seq_lit"):
        logging.getLogger(name).setLevel(logging.WARNING)


# -- child processes -------------------------------------------------------------------------------------------------


def child_peak(spec: dict[str, Any]) -> dict[str, Any]:
    """Matmul GFLOP/s in float32 and bfloat16 on the training device."""
    from seq2seq_lit.utils.precision import avoid_unusable_amx

    capped = avoid_unusable_amx("bf16-mixed", "cpu" if spec["device"] == "cpu" else "gpu")
    from flops import matmul_gflops

    return {
        "device": spec["device"],
        "threads": torch.get_num_threads(),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "onednn_capped_here": capped,
        "fp32_gflops": matmul_gflops(torch.float32, MATMUL_SIZE, spec["device"], spec["seconds"]),
        "bf16_gflops": matmul_gflops(torch.bfloat16, MATMUL_SIZE, spec["device"], spec["seconds"]),
    }


def child_train(spec: dict[str, Any]) -> dict[str, Any]:
    """Time ``spec["steps"]`` training steps after ``spec["warmup"]``; count their FLOPs; check one with torch."""
    from seq2seq_lit.build import build_data, build_module, prepare_run

    output_dir = Path(spec["output_dir"])
    cfg = compose(spec["overrides"], output_dir)
    prepare_run(cfg)  # before any oneDNN work
    import hydra
    from flops import counted_step_flops, training_step_flops

    _quiet()
    datamodule = build_data(cfg.data)
    model = build_module(cfg.model, datamodule)
    device = device_of(cfg)
    timer = StepTimer(spec["warmup"], datamodule.pad_id, cuda=device == "cuda")
    trainer = hydra.utils.instantiate(
        cfg.trainer,
        callbacks=[timer],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        max_steps=spec["warmup"] + spec["steps"],
        limit_val_batches=0,
        num_sanity_val_steps=0,
        default_root_dir=str(output_dir),
    )
    trainer.fit(model, datamodule=datamodule)
    rss = peak_rss_mib()

    steps = timer.steps
    seconds = sum(s["seconds"] for s in steps)
    tokens = sum(s["src_tokens"] + s["tgt_tokens"] for s in steps)
    flops = [training_step_flops(model.net, s["src_lengths"], s["tgt_lengths"], padded=False).total for s in steps]
    flops_padded = [training_step_flops(model.net, s["src_lengths"], s["tgt_lengths"]).total for s in steps]

    batch = timer.last_batch.to(model.device)  # FlopCounterMode cross-check, float32, on the last timed batch
    model.train()
    model.zero_grad(set_to_none=True)
    counted = counted_step_flops(model.net, batch, datamodule.pad_id)
    model.zero_grad(set_to_none=True)
    analytic = training_step_flops(model.net, batch.src_lengths, (batch.tgt_out != datamodule.pad_id).sum(1))
    return {
        "input_feeding": bool(cfg.model.decoder.input_feeding),
        "precision": str(cfg.trainer.precision),
        "device": device,
        "batch_size": cfg.data.batch_size,
        "src_vocab": datamodule.src_vocab_size,
        "tgt_vocab": datamodule.tgt_vocab_size,
        "train_pairs_filtered": dict(datamodule.num_filtered),
        "parameters": sum(p.numel() for p in model.parameters()),
        "warmup_steps": spec["warmup"],
        "steps": len(steps),
        "seconds": seconds,
        "s_per_step": seconds / len(steps),
        "loop_s_per_step": timer.loop_seconds / max(timer.loop_steps, 1),
        "tokens": tokens,
        "tokens_per_s": tokens / seconds,
        "padding_fraction": 1 - tokens / sum(s["padded_tokens"] for s in steps),
        "flops_per_step": sum(flops) / len(steps),
        "flops_per_step_padded": sum(flops_padded) / len(steps),
        "flops_per_s": sum(flops) / seconds,
        "check_batch_flops_analytic_padded": analytic.total,
        "check_batch_flops_torch": counted,
        "check_batch_forward_flops_by_part": analytic.forward,
        "peak_rss_mib": rss,
        "final_loss": float(trainer.callback_metrics.get("train/loss", float("nan"))),
    }


class StepTimer(L.Callback):
    """Times each training step after ``warmup`` (batch start to batch end) and records its token counts."""

    def __init__(self, warmup: int, pad_id: int, cuda: bool = False) -> None:
        self.warmup, self.pad_id, self.cuda = warmup, pad_id, cuda
        self.steps: list[dict[str, Any]] = []
        self.last_batch = None
        self.loop_seconds, self.loop_steps = 0.0, 0
        self._start = self._last_end = 0.0

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = self._now()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        end = self._now()
        timed = trainer.global_step > self.warmup  # global_step counts this step already
        if timed and self.steps:
            self.loop_seconds += end - self._last_end
            self.loop_steps += 1
        self._last_end = end
        if not timed:
            return
        tgt_lengths = (batch.tgt_out != self.pad_id).sum(1).cpu()
        self.steps.append(
            {
                "seconds": end - self._start,
                "src_lengths": batch.src_lengths.cpu(),
                "tgt_lengths": tgt_lengths,
                "src_tokens": int(batch.src_lengths.sum()),
                "tgt_tokens": int(tgt_lengths.sum()),
                "padded_tokens": batch.src.numel() + batch.tgt_out.numel(),
            }
        )
        self.last_batch = batch


def child_decode(spec: dict[str, Any]) -> dict[str, Any]:
    """Translate the test split with greedy search and beam 5; sentences/s and BLEU."""
    output_dir = Path(spec["output_dir"])
    cfg = compose(spec["overrides"], output_dir)

    from seq2seq_lit.build import build_data, build_module
    from seq2seq_lit.data import read_parallel
    from seq2seq_lit.data.held_out import split_files
    from seq2seq_lit.inference.checkpoints import load_checkpoint
    from seq2seq_lit.inference.quantization import quantize_for_decoding
    from seq2seq_lit.inference.translation import translate_lines
    from seq2seq_lit.metrics import corpus_metrics
    from seq2seq_lit.search import BeamSearch, GreedySearch

    _quiet()
    L.seed_everything(cfg.seed, verbose=False)
    device = device_of(cfg)
    sources, references = read_parallel(*split_files(cfg.data, "test"))
    if spec["limit"]:
        sources, references = sources[: spec["limit"]], references[: spec["limit"]]
    if spec["ckpt"]:
        module = load_checkpoint(spec["ckpt"], device)
    else:
        module = build_module(cfg.model, build_data(cfg.data, stage=None))
        module.to(device)
    module.eval()
    searches = {
        "greedy": GreedySearch(**{k: v for k, v in cfg.model.search.items() if k != "_target_"}),
        "beam5": BeamSearch(beam_size=5, alpha=spec["beam_alpha"]),
    }
    results = {}
    for quantize in spec["quantize"]:  # "none" first: quantizing replaces the module's network
        quantize_for_decoding(module, quantize)
        for name, search in searches.items():
            module.search = search
            with torch.inference_mode():
                start = time.perf_counter()
                hypotheses = translate_lines(module, sources, spec["batch"])
                if device == "cuda":
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - start
            bleu = corpus_metrics(hypotheses, references, names=("bleu",))["bleu"]["score"]
            key = name if quantize == "none" else f"{name}_{quantize}"
            results[key] = {"seconds": seconds, "sentences_per_s": len(sources) / seconds, "bleu": float(bleu)}
    return {
        "ckpt": spec["ckpt"],
        "trained": bool(spec["ckpt"]),
        "sentences": len(sources),
        "batch": spec["batch"],
        "beam_alpha": spec["beam_alpha"],
        "quantize": spec["quantize"],
        "device": device,
        **results,
        "peak_rss_mib": peak_rss_mib(),
    }


CHILDREN = {"peak": child_peak, "train": child_train, "decode": child_decode}


def run_child(kind: str, spec: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
    """Run ``kind`` in a fresh Python process, stopped after ``timeout`` seconds (``subprocess.TimeoutExpired``); its
    figures come back through a JSON file."""
    with tempfile.TemporaryDirectory(prefix="s2s-bench-") as folder:
        spec = {**spec, "output_dir": str(Path(folder) / "run"), "result": str(Path(folder) / "result.json")}
        command = [sys.executable, __file__, "--_child", kind, json.dumps(spec)]
        subprocess.run(command, check=True, cwd=REPO, timeout=timeout)
        return json.loads(Path(spec["result"]).read_text())


# -- report ----------------------------------------------------------------------------------------------------------


def format_report(figures: dict[str, Any]) -> str:
    peak = figures["matmul_peak"]
    fp32, bf16 = peak["fp32_gflops"] * 1e9, peak["bf16_gflops"] * 1e9
    lines = [
        f"matmul peak ({MATMUL_SIZE}x{MATMUL_SIZE}, {peak['device']}, {peak['threads']} threads): "
        f"fp32 {peak['fp32_gflops']:.0f} GFLOP/s, bf16 {peak['bf16_gflops']:.0f} GFLOP/s"
        + (f" (ONEDNN_MAX_CPU_ISA={peak['onednn_max_cpu_isa']})" if peak["onednn_max_cpu_isa"] else ""),
        "",
    ]
    header = f"{'':22} {'measured':>10} {'limit fp32':>11} {'limit bf16':>11} {'of fp32 peak':>13} {'of bf16 peak':>13}"
    for row in figures["training"]:
        flops = row["flops_per_step"]
        limit32, limit16 = flops / fp32, flops / bf16
        tokens_per_step = row["tokens"] / row["steps"]
        check = row["check_batch_flops_analytic_padded"] / row["check_batch_flops_torch"]
        lines += [
            f"training: input feeding {'on' if row['input_feeding'] else 'off'}, precision {row['precision']}, "
            f"{row['batch_size']} sentences/batch, {row['steps']} steps after {row['warmup_steps']} warm-up "
            f"(Lightning Trainer: forward, backward, clip, Adam), {row['device']}",
            header,
            f"{'s/step':22} {row['s_per_step']:>10.3f} {limit32:>11.3f} {limit16:>11.3f} "
            f"{limit32 / row['s_per_step']:>13.1%} {limit16 / row['s_per_step']:>13.1%}",
            f"{'tokens/s (src+tgt)':22} {row['tokens_per_s']:>10,.0f} {tokens_per_step / limit32:>11,.0f} "
            f"{tokens_per_step / limit16:>11,.0f} {limit32 / row['s_per_step']:>13.1%} "
            f"{limit16 / row['s_per_step']:>13.1%}",
            f"{'GFLOP/s achieved':22} {row['flops_per_s'] / 1e9:>10.1f}",
            f"{'loop s/step':22} {row['loop_s_per_step']:>10.3f}   (with data loading and Lightning's loop)",
            f"{'peak RSS':22} {row['peak_rss_mib']:>10,.0f} MiB",
            f"  GFLOP/step: {flops / 1e9:.2f} useful (real tokens), {row['flops_per_step_padded'] / 1e9:.2f} as "
            f"computed (padding {row['padding_fraction']:.1%} of the tokens); one batch: analytic "
            f"{row['check_batch_flops_analytic_padded'] / 1e9:.3f}, FlopCounterMode "
            f"{row['check_batch_flops_torch'] / 1e9:.3f} (ratio {check:.3f})",
            "",
        ]
    if figures.get("peers"):
        lines += format_side_by_side(figures)
    if decode := figures.get("decode"):
        untrained = "an UNTRAINED model (no EOS: every sentence runs to the length cap)"
        source = decode["ckpt"] if decode["trained"] else untrained
        lines.append(
            f"decoding {decode['sentences']} test sentences, batch {decode['batch']}, {source}, {decode['device']}"
        )
        for name, label in decode_rows(decode):
            r = decode[name]
            label = label.replace("beam 5", f"beam 5 (alpha {decode['beam_alpha']})")
            lines.append(f"  {label:29} {r['sentences_per_s']:>8.1f} sentences/s   BLEU {r['bleu']:.2f}")
        lines.append(f"  peak RSS {decode['peak_rss_mib']:,.0f} MiB")
    return "\n".join(lines)


def format_side_by_side(figures: dict[str, Any]) -> list[str]:
    """Each peer's training and decoding figures next to seq2seq-lit's (fp32 rows; ratios are ours / theirs)."""
    ours = {("on" if r["input_feeding"] else "off"): r for r in figures["training"] if r["precision"] == "32"}
    decode = figures.get("decode")
    lines = ["side by side, same machine and run (tokens/s: source + target; ratio: seq2seq-lit / peer)"]
    for peer in figures["peers"].values():
        lines.append(
            f"  {peer['toolkit']} ({peer['steps']} steps): {peer['s_per_step']:.3f} s/step, "
            f"{peer['tokens_per_s']:,.0f} tokens/s, peak RSS {peer['peak_rss_mib']:,.0f} MiB; decoding greedy "
            f"{peer['greedy']['sentences_per_s']:.0f} / beam 5 {peer['beam5']['sentences_per_s']:.0f} sentences/s, "
            f"BLEU {peer['greedy']['bleu']:.2f} / {peer['beam5']['bleu']:.2f}"
        )
        for feed, row in ours.items():
            lines.append(
                f"    training, input feeding {feed}: {row['tokens_per_s'] / peer['tokens_per_s']:.2f}x tokens/s "
                f"({row['tokens_per_s']:,.0f} vs {peer['tokens_per_s']:,.0f})"
            )
        if decode:
            for name, label in decode_rows(decode):
                peer_row = peer[name.split("_")[0]]  # the peer's float32 figure for the same search
                ratio = decode[name]["sentences_per_s"] / peer_row["sentences_per_s"]
                lines.append(
                    f"    decoding {label}: {ratio:.2f}x sentences/s ({decode[name]['sentences_per_s']:.0f} vs "
                    f"{peer_row['sentences_per_s']:.0f}; BLEU {decode[name]['bleu']:.2f} vs {peer_row['bleu']:.2f})"
                )
    return lines + [""]


def decode_rows(decode: dict[str, Any]) -> list[tuple[str, str]]:
    """The decoding figures present, as (key, label): greedy and beam 5, float32 and int8 (peers' rows are float32)."""
    rows = [("greedy", "greedy"), ("beam5", "beam 5"), ("greedy_int8", "greedy, int8"), ("beam5_int8", "beam 5, int8")]
    return [(key, label) for key, label in rows if key in decode]


def decode_quantize(choice: str | None, device: str) -> list[str]:
    """The ``quantize`` settings to decode with: ``--quantize`` (``both``: none and int8), by default both on a CPU
    and none elsewhere (int8 decoding is CPU only)."""
    choice = choice or ("both" if device == "cpu" else "none")
    return ["none", "int8"] if choice == "both" else [choice]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="Figures and method: see the docstring of bench/train_decode.py."
    )
    parser.add_argument("--steps", type=int, default=30, help="timed training steps (default 30)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    parser.add_argument("--input-feeding", choices=("both", "on", "off"), default="both")
    parser.add_argument("--precision", choices=("32", "bf16-mixed", "both"), default="32")
    parser.add_argument("--decode", action="store_true", help="also time greedy and beam-5 decoding of the test split")
    parser.add_argument("--ckpt", help="checkpoint to decode with (default: an untrained model)")
    parser.add_argument("--decode-batch", type=int, default=64, help="sentences per decoding batch (default 64)")
    parser.add_argument("--decode-limit", type=int, default=0, help="decode only the first N test sentences")
    parser.add_argument(
        "--quantize", choices=("none", "int8", "both"), help="decode in float32, int8 or both (default: both on a CPU)"
    )
    parser.add_argument("--beam-alpha", type=float, default=1.0, help="GNMT length penalty of beam 5 (default 1.0)")
    parser.add_argument("--peak-seconds", type=float, default=2.0, help="time per matmul peak measurement (default 2)")
    parser.add_argument("--json", help="write all figures to this file")
    parser.add_argument("--peers", default="", help="comma-separated peers to run side by side: onmt, joey")
    parser.add_argument("--peer-steps", type=int, default=300, help="training steps of each peer (default 300)")
    parser.add_argument(
        "--peers-dir", type=Path, default=REPO.parent / "shared" / "peers", help="folder with run_onmt.sh / run_joey.sh"
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides applied after experiment=bench_reference")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be at least 1 and --warmup at least 0")

    probe_cfg = compose(args.overrides, Path(tempfile.gettempdir()) / "s2s-bench")
    device = device_of(probe_cfg)
    figures: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "overrides": args.overrides,
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "matmul_peak": run_child("peak", {"device": device, "seconds": args.peak_seconds}),
        "training": [],
    }
    feeds = {"both": ["true", "false"], "on": ["true"], "off": ["false"]}[args.input_feeding]
    precisions = ["32", "bf16-mixed"] if args.precision == "both" else [args.precision]
    for feed in feeds:
        for precision in precisions:
            overrides = [f"model.decoder.input_feeding={feed}", f"trainer.precision={precision}", *args.overrides]
            spec = {"overrides": overrides, "steps": args.steps, "warmup": args.warmup}
            figures["training"].append(run_child("train", spec))
    if args.decode:
        spec = {
            "overrides": args.overrides,
            "ckpt": str(Path(args.ckpt).resolve()) if args.ckpt else None,
            "batch": args.decode_batch,
            "limit": args.decode_limit,
            "beam_alpha": args.beam_alpha,
            "quantize": decode_quantize(args.quantize, device),
        }
        figures["decode"] = run_child("decode", spec)
    if args.peers:
        data_dir = Path(os.environ["SEQ2SEQ_DATA_DIR"]) / "multi30k" if os.environ.get("SEQ2SEQ_DATA_DIR") else None
        figures["peers"] = {
            name: run_peer(name, args.peers_dir, args.peer_steps, data_dir) for name in args.peers.split(",") if name
        }
    print(format_report(figures), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--_child":
        kind, spec = sys.argv[2], json.loads(sys.argv[3])
        result = CHILDREN[kind](spec)
        Path(spec["result"]).write_text(json.dumps(result))
    else:
        main()
