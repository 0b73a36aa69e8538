"""Failure cases of issue 26 about processes, signals and disks, one test each (numbered as in the issue):

7. a signal to one DDP rank, whatever it is doing, stops every rank after the same step with a checkpoint, exit 143;
8. ``s2s-prepare`` killed while encoding leaves no encoding worker behind;
9. a real full disk (a 5 MB tmpfs) is one line and exit 2, in ``train.log`` too, from numpy, ``torch.save`` and
   sentencepiece alike;
11. ``s2s-translate | head -1`` ends quietly;
12. SIGINT to ``s2s-prepare`` or to an interactive ``s2s-translate``: one line, exit 130, no traceback;
16. a corpus store shared by a group: its folders and lock are group-writable, and a lock error names
    ``data.store_dir``.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

from .conftest import TINY, reverse_data_overrides, write_reverse_corpus
from .process_helpers import run_group

# -- 7. DDP: every rank stops after the same step, whichever rank got the signal and wherever ----------------------


@pytest.fixture(scope="module")
def ddp_corpus(tmp_path_factory) -> dict[str, Path]:
    """320 training pairs: per process, epochs of 5 batches of 32 (a validation every 5 steps)."""
    return write_reverse_corpus(tmp_path_factory.mktemp("ddp_signal"), {"train": 320, "val": 40, "test": 40}, seed=3)


def ddp_run_args(corpus: dict[str, Path], run_dir: Path) -> list[str]:
    """20 deterministic steps on 2 CPU processes with dropout, a validation at every epoch's end (5 steps),
    ``last.ckpt`` every 5 steps."""
    tiny = [a for a in TINY if not a.startswith("model.dropout=")]
    return ["python", "-m", "seq2seq_lit.train", *tiny, *reverse_data_overrides(corpus),
            "model.dropout=0.1", "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu", "trainer.deterministic=true",
            "~logger", "callbacks.learning_rate_monitor=null", "test=false", "trainer.max_steps=20",
            "trainer.limit_val_batches=1", "callbacks.attention_heatmaps=null", "callbacks.sample_translations=null",
            "callbacks.resume_checkpoint.every_n_train_steps=5", f"paths.cache_dir={run_dir.parent / 'cache'}",
            f"hydra.run.dir={run_dir}"]


@pytest.fixture(scope="module")
def uninterrupted_ddp_run(ddp_corpus, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("ddp_whole") / "run"
    result = run_group(*ddp_run_args(ddp_corpus, run_dir), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.mark.slow
@pytest.mark.parametrize(
    "rank, step, hook, stop_step",
    [
        (0, 6, "train_batch_end", 6),  # the launcher, one step after the periodic save (due at 5, an epoch end: at 6)
        (1, 10, "validation_batch_start", 11),  # rank 1 alone, in the middle of the validation after step 10
        (1, 6, "save_checkpoint", 7),  # rank 1 alone, while the ranks gather their states for the save at step 6
    ],
    ids=["launcher-after-save", "rank1-in-validation", "rank1-in-checkpoint"],
)
def test_07_a_sigterm_to_one_ddp_rank_stops_every_rank_at_the_same_step_with_exit_143(
    rank, step, hook, stop_step, ddp_corpus, uninterrupted_ddp_run, tmp_path
):
    run_dir, stamp = tmp_path / "run", tmp_path / "signalled_at"
    args = ddp_run_args(ddp_corpus, run_dir)
    signal_at = ["+callbacks.signal._target_=tests.process_helpers.SignalRankAt", f"+callbacks.signal.rank={rank}",
                 f"+callbacks.signal.step={step}", f"+callbacks.signal.hook={hook}", f"+callbacks.signal.stamp={stamp}"]
    stopped = run_group(*args, *signal_at, timeout=180)  # a hang is killed (the whole process group) and fails
    last = run_dir / "checkpoints" / "last.ckpt"
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    after_signal = stopped.ended - float(stamp.read_text())
    assert after_signal < 60, f"the run ended {after_signal:.0f} s after the signal"
    assert not stopped.left_over  # the launcher ended after the rank it started
    for r in (0, 1):  # both ranks stopped on the signal, after the same step, and said so
        assert f"SIGTERM received (rank {r}): saved {last} at step {stop_step}" in stopped.stderr, stopped.stderr[-3000:]
    assert "exited with status 143" in stopped.stdout  # rank 1, as the launcher saw it
    assert "Traceback" not in stopped.stderr
    assert torch.load(last, weights_only=True)["global_step"] == stop_step

    if rank == 0:  # and the run resumes from there to the weights of the uninterrupted run
        resumed = run_group(*args, "ckpt_path=last", timeout=300)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        final = torch.load(last, weights_only=True)
        whole = torch.load(uninterrupted_ddp_run / "checkpoints" / "last.ckpt", weights_only=True)
        assert final["global_step"] == whole["global_step"] == 20
        for name, tensor in whole["state_dict"].items():
            assert torch.equal(final["state_dict"][name], tensor), name
