"""``experiment=quickstart``, the first run of the README: BLEU in metrics.json, attention heatmaps as PNG files, and
the summary says where both are."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .conftest import TINY, compose_train, reverse_data_overrides, run_module

MULTI30K = Path(os.environ.get("SEQ2SEQ_DATA_DIR", "/nonexistent")) / "multi30k"


def test_quickstart_needs_no_account_and_reports_bleu_and_heatmaps(reverse_corpus, tmp_path, capsys):
    from seq2seq_lit.train import train

    # the preset on the reverse task, sized down: what it configures besides the model and the corpus is under test
    not_model = [o for o in TINY if not o.startswith(("model.", "callbacks."))]
    overrides = ["experiment=quickstart", *not_model, *reverse_data_overrides(reverse_corpus), "trainer.max_steps=5"]
    cfg = compose_train(overrides, tmp_path / "run")
    assert list(cfg.logger) == ["csv"] and "quickstart" in cfg.tags
    metrics = train(cfg)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test/bleu"] == metrics["test/bleu"]
    heatmaps = sorted((tmp_path / "run" / "csv" / "version_0" / "images").glob("val_attention_*.png"))
    assert len(heatmaps) == 3  # three validation sentences, after the one validation at the last step
    printed = capsys.readouterr().out
    assert f"metrics written to {tmp_path / 'run' / 'metrics.json'}" in printed
    assert f"attention heatmaps (3) written to {heatmaps[0].parent}" in printed


@pytest.mark.slow
@pytest.mark.skipif(not (MULTI30K / "train.de").is_file(), reason="needs $SEQ2SEQ_DATA_DIR/multi30k (no download in tests)")
def test_quickstart_on_multi30k_learns_something(tmp_path):
    run_dir = tmp_path / "quickstart"
    result = run_module("seq2seq_lit.train", "experiment=quickstart", f"paths.cache_dir={tmp_path}/cache", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["global_step"] == 300 and metrics["test/bleu"] > 1.0
    assert "attention heatmaps (3) written to" in result.stdout
