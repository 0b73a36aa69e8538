"""Mixed precision on the CPU: bf16-mixed trains with a finite loss, attention stays float32 and masked.

Everything that runs bfloat16 products runs in a child process: on a CPU that lists AMX but faults on it, oneDNN's
AMX kernels end the process with SIGILL (see :mod:`seq2seq_lit.utils.precision`), which must not take pytest down.
16-mixed (float16) needs a GPU and is not tested here.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from seq2seq_lit.modules.attention.catalogue import attention_names
from seq2seq_lit.utils.precision import avoid_unusable_amx, unfuse_optimizer_for_clipping

from .conftest import TINY, reverse_data_overrides

REPO = Path(__file__).resolve().parents[1]


def run_python(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=timeout)


@pytest.mark.slow
def test_bf16_mixed_cpu_run_trains_with_finite_loss(reverse_corpus, tmp_path):
    run_dir = tmp_path / "bf16"
    result = run_python(
        "-m", "seq2seq_lit.train", *TINY, *reverse_data_overrides(reverse_corpus),
        "trainer.precision=bf16-mixed", "trainer.max_steps=60", "logger=csv", "callbacks.attention_heatmaps=null",
        f"paths.log_dir={tmp_path}/logs", f"paths.cache_dir={tmp_path}/cache", f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["global_step"] == 60
    rows = list(csv.DictReader(open(run_dir / "csv" / "version_0" / "metrics.csv")))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(losses) >= 5 and all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0]  # it learns
    for key in ("val/loss", "test/loss", "test/bleu"):
        assert math.isfinite(metrics[key]), key
    hparams = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    assert hparams.trainer.precision == "bf16-mixed"


AUTOCAST_CHECK = textwrap.dedent(
    """
    import sys
    from seq2seq_lit.utils.precision import avoid_unusable_amx
    avoid_unusable_amx("bf16-mixed", "cpu")  # before any oneDNN operation, as train does
    import hydra, torch
    from omegaconf import OmegaConf
    torch.manual_seed(0)

    def check(name):
        factory = hydra.utils.instantiate(OmegaConf.load(f"conf/model/attention/{name}.yaml"))
        attention = factory(query_size=16, key_size=16)
        keys = torch.randn(3, 7, 16)
        pad = torch.zeros(3, 7, dtype=torch.bool)
        pad[1, 4:] = True
        pad[2, 1:] = True  # one real source token
        query = torch.randn(3, 5, 16)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            cache = attention.prepare(keys, pad)
            context, weights = attention(query, cache)
            probe = torch.nn.Linear(16, 4)(keys)
        assert probe.dtype == torch.bfloat16, probe.dtype  # autocast is on
        assert weights.dtype == torch.float32, weights.dtype
        assert torch.isfinite(weights).all() and torch.isfinite(context.float()).all()
        assert (weights.masked_select(pad.unsqueeze(1).expand_as(weights)) == 0).all()
        sums = weights.sum(-1)
        if name == "local_p":  # the Gaussian rescales the weights: rows sum to at most 1
            assert (sums <= 1 + 1e-5).all() and (sums > 0).all()
        elif name != "none":
            assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5), sums
        print("ok", name)

    for name in sys.argv[1:]:
        check(name)
    """
)


ATTENTIONS = attention_names()


@pytest.mark.slow
def test_every_attention_under_bf16_autocast_is_masked_and_normalized_in_float32(tmp_path):
    script = tmp_path / "check.py"
    script.write_text(AUTOCAST_CHECK)
    result = run_python(str(script), *ATTENTIONS, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == [word for name in ATTENTIONS for word in ("ok", name)]


def test_amx_check_only_for_cpu_bfloat16_and_never_over_the_users_setting(monkeypatch):
    import seq2seq_lit.utils.precision as precision

    probed = []
    monkeypatch.setattr(precision, "amx_bf16_works", lambda timeout=120.0: probed.append(1) or False)
    monkeypatch.setattr(precision, "cpu_advertises_amx", lambda: True)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert not avoid_unusable_amx(32, "cpu") and not avoid_unusable_amx("16-mixed", "gpu")
    assert not avoid_unusable_amx("bf16-mixed", "gpu") and not probed
    assert avoid_unusable_amx("bf16-mixed", "cpu") and os.environ["ONEDNN_MAX_CPU_ISA"] == precision.ISA_WITHOUT_AMX
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not avoid_unusable_amx("bf16-mixed", "cpu") and os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX2"


def test_mixed_precision_with_clipping_unfuses_the_optimizer():
    cfg = OmegaConf.create({"trainer": {"precision": "bf16-mixed", "gradient_clip_val": 5.0}, "model": {"optimizer": {"fused": True}}})
    assert unfuse_optimizer_for_clipping(cfg) and cfg.model.optimizer.fused is False
    cfg = OmegaConf.create({"trainer": {"precision": 32, "gradient_clip_val": 5.0}, "model": {"optimizer": {"fused": True}}})
    assert not unfuse_optimizer_for_clipping(cfg) and cfg.model.optimizer.fused is True
