"""Quality on the real corpus: a short default run on Multi30k de->en (minutes; needs the files locally)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .conftest import compose_train

DATA_DIR = os.environ.get("SEQ2SEQ_DATA_DIR", "")


@pytest.mark.slow
@pytest.mark.skipif(
    not (Path(DATA_DIR) / "multi30k" / "train.de").is_file(),
    reason="set SEQ2SEQ_DATA_DIR to a folder with multi30k/ (tests never download)",
)
def test_600_steps_of_the_default_model_reach_test_bleu_20(tmp_path):
    from seq2seq_lit.train import train

    overrides = [
        "trainer.max_steps=600",
        "trainer.enable_progress_bar=false",
        "callbacks.progress_bar=null",
        "logger=csv",
    ]
    metrics = train(compose_train(overrides, tmp_path / "run"))
    assert metrics["global_step"] == 600
    assert metrics["test/bleu"] >= 20.0, metrics
    assert metrics["test/chrf"] >= 40.0, metrics
