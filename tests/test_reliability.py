"""Reliability: interrupted runs resume exactly, checkpoints are written atomically and loaded without running code,
NaN losses stop or skip cleanly, bad input exits with a message, translate keeps line alignment, and W&B falls back
to offline."""

from __future__ import annotations

import csv
import logging
import os
import random
import socket
import subprocess
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seq2seq_lit.data import BucketBatchSampler, TranslationDataset, collate, read_lines
from seq2seq_lit.data.datamodule import ResumableDataLoader
from seq2seq_lit.errors import DataError
from seq2seq_lit.inference.checkpoints import load_checkpoint, read_checkpoint
from seq2seq_lit.inference.translation import source_limit, translate_lines, translate_nbest
from seq2seq_lit.lit_module import TOKENIZERS_KEY, Seq2SeqLitModule
from seq2seq_lit.translate import _format
from seq2seq_lit.utils.checkpoint_io import AtomicCheckpointIO
from seq2seq_lit.utils.nonfinite import NonFiniteError

from .conftest import SYMBOLS, TINY, compose_train, reverse_data_overrides, run_module, write_reverse_corpus
from .test_train import wandb_logged_values


def assert_clean_exit(result: subprocess.CompletedProcess, status: int, *fragments: str) -> None:
    """Exit ``status`` with every fragment in stderr and no traceback anywhere."""
    assert result.returncode == status, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr + result.stdout


# -- interrupted runs ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> dict[str, Path]:
    """320 training pairs: epochs of 10 batches of 32, so that 60 steps cross 5 epoch ends (validation, LR plateau)."""
    return write_reverse_corpus(tmp_path_factory.mktemp("small"), {"train": 320, "val": 40, "test": 40})


def resumable_run_args(corpus: dict[str, Path], run_dir: Path) -> list[str]:
    """60 deterministic CPU steps with dropout and scheduled sampling (both draw random numbers), ReduceLROnPlateau
    after each epoch's validation, last.ckpt every 5 steps, every step's metrics in a CSV log."""
    return [o for o in TINY if not o.startswith(("model.dropout", "model.optimizer.lr"))] + reverse_data_overrides(corpus) + [
        "model.dropout=0.1",
        "model.optimizer.lr=0.01",
        "model/teacher_forcing=linear",
        "model.teacher_forcing.decay_steps=200",
        "logger=csv",
        "trainer.max_steps=60",
        "trainer.log_every_n_steps=1",
        "trainer.deterministic=true",
        "test=false",
        "callbacks.attention_heatmaps=null",
        "callbacks.resume_checkpoint.every_n_train_steps=5",
        f"paths.cache_dir={run_dir.parent / 'cache'}",
        f"hydra.run.dir={run_dir}",
    ]


def logged_metrics(run_dir: Path) -> dict[tuple[int, str], float]:
    """Every value in the run's CSV logs (all versions: a resumed run adds one), by (step, key)."""
    values = {}
    for path in sorted(run_dir.glob("csv/version_*/metrics.csv")):
        for row in csv.DictReader(open(path)):
            for key, value in row.items():
                if value and key not in ("step", "epoch"):
                    values[int(row["step"]), key] = float(value)
    return values


@pytest.fixture(scope="module")
def uninterrupted_run(small_corpus, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    result = run_module("seq2seq_lit.train", *resumable_run_args(small_corpus, run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.mark.parametrize(
    "signal_name, step, saved_step, status",
    [
        ("SIGKILL", 13, 11, -9),  # the step-10 save falls on an epoch's last batch: it happened after step 11
        ("SIGTERM", 20, 21, 143),  # step 20 ends an epoch: the run validates, trains step 21, then saves and stops
        ("SIGINT", 24, 24, 130),
    ],
)
@pytest.mark.slow
def test_killed_or_signalled_run_resumes_to_the_same_weights_and_losses(
    signal_name, step, saved_step, status, small_corpus, uninterrupted_run, tmp_path
):
    run_dir = tmp_path / "run"
    args = resumable_run_args(small_corpus, run_dir)
    killer = ["+callbacks.kill._target_=tests.reliability_helpers.SignalAtStep", f"+callbacks.kill.step={step}"]
    killed = run_module("seq2seq_lit.train", *args, *killer, f"+callbacks.kill.signal={signal_name}")
    last = run_dir / "checkpoints" / "last.ckpt"
    if signal_name == "SIGKILL":
        assert killed.returncode == status
    else:  # caught: a checkpoint after the current step, a message saying how to resume, exit 128 + signal
        assert_clean_exit(killed, status, f"{signal_name} received: saved {last} at step {saved_step}", "ckpt_path=last")
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["global_step"] == saved_step
    assert not list(last.parent.glob(".*.tmp"))  # atomic writes leave no temporary file

    resumed = run_module("seq2seq_lit.train", *args, "ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "not resumable" not in resumed.stderr

    expected = torch.load(uninterrupted_run / "checkpoints" / "last.ckpt", weights_only=True)
    final = torch.load(last, weights_only=True)
    assert final["global_step"] == expected["global_step"] == 60
    for name, tensor in expected["state_dict"].items():
        assert torch.equal(final["state_dict"][name], tensor), name
    assert final["lr_schedulers"] == expected["lr_schedulers"]  # the plateau halvings, as uninterrupted
    for got, want in zip(final["optimizer_states"][0]["state"].values(), expected["optimizer_states"][0]["state"].values()):
        assert all(torch.equal(got[k], want[k]) for k in want)
    # Every metric the resumed run logged (train/loss per step, val/bleu and val/bleu_best per epoch, the learning
    # rate, the teacher-forcing ratio) equals the uninterrupted run's at the same step.
    reference, after = logged_metrics(uninterrupted_run), logged_metrics(run_dir)
    resumed_steps = {(s, k): v for (s, k), v in after.items() if s >= saved_step}
    assert {k for _, k in resumed_steps} >= {"train/loss", "val/bleu", "val/bleu_best", "lr-Adam"}
    assert resumed_steps == {key: reference[key] for key in resumed_steps}
    assert [s for s, k in resumed_steps if k == "train/loss"] == list(range(saved_step, 60))


@pytest.mark.slow
def test_resuming_needs_an_existing_training_checkpoint_of_the_same_model(trained_reverse_run, reverse_corpus, tmp_path):
    _, metrics = trained_reverse_run
    args = TINY + reverse_data_overrides(reverse_corpus) + ["~logger", f"paths.cache_dir={tmp_path}/cache"]
    no_last = run_module("seq2seq_lit.train", *args, f"hydra.run.dir={tmp_path}/fresh", "ckpt_path=last")
    assert_clean_exit(no_last, 2, f"{tmp_path}/fresh/checkpoints/last.ckpt does not exist", "hydra.run.dir=")

    other_model = run_module(
        "seq2seq_lit.train", *args, f"hydra.run.dir={tmp_path}/other", f"ckpt_path={metrics['best_model_path']}",
        "model.embedding_size=16",
    )
    assert_clean_exit(other_model, 2, "do not fit the configured model", "net.src_embed.weight is (")

    bad_choice = run_module("seq2seq_lit.train", *args, f"hydra.run.dir={tmp_path}/bad", "model.nonfinite_loss=ignore")
    assert_clean_exit(bad_choice, 2, "model.nonfinite_loss='ignore'; valid choices: stop, skip")


def test_resumable_loader_continues_the_epoch_where_it_stopped():
    lengths = [random.Random(i).randint(1, 30) for i in range(100)]
    dataset = TranslationDataset([[4] * n for n in lengths])

    def loader() -> ResumableDataLoader:
        sampler = BucketBatchSampler(lengths, batch_size=8, seed=5, bucket_factor=2)
        return ResumableDataLoader(dataset, batch_sampler=sampler, collate_fn=collate, generator=torch.Generator())

    first = loader()
    first.batch_sampler.set_epoch(3)
    iterator = iter(first)
    seen = [next(iterator).indices.tolist() for _ in range(5)]
    assert first.state_dict() == {"epoch": 3, "batches": 5}

    second = loader()
    second.load_state_dict(first.state_dict())
    iterator = iter(second)
    second.batch_sampler.set_epoch(3)  # what Lightning does after iter(): the epoch decides at the first batch
    rng_state = torch.get_rng_state()
    rest = [b.indices.tolist() for b in iterator]
    assert torch.equal(torch.get_rng_state(), rng_state)  # the workers' seed came from the loader's generator
    assert seen + rest == second.batch_sampler.batches(3) and len(rest) == len(second) - 5
    assert second.state_dict() == {"epoch": 3, "batches": len(second)}

    third = loader()
    third.load_state_dict({"epoch": 3, "batches": 5})
    third.batch_sampler.set_epoch(4)  # a resumed run that starts the next epoch ignores the old position
    assert [b.indices.tolist() for b in third] == third.batch_sampler.batches(4)


# -- checkpoints ---------------------------------------------------------------------------------------------------


class Payload:
    """Pickles as a call to ``os.system``: loading it with ``weights_only=False`` runs the command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.fixture
def malicious_checkpoint(trained_reverse_run, tmp_path) -> tuple[Path, Path]:
    """A real checkpoint plus a pickled ``os.system("touch MARKER")``; returns (checkpoint, marker)."""
    _, metrics = trained_reverse_run
    marker = tmp_path / "payload-ran"
    checkpoint = torch.load(metrics["best_model_path"], weights_only=True)
    checkpoint["callbacks"]["innocent"] = Payload(f"touch {marker}")
    path = tmp_path / "evil.ckpt"
    torch.save(checkpoint, path)
    torch.load(path, weights_only=False)  # the payload is real: an unsafe load runs it
    assert marker.exists()
    marker.unlink()
    return path, marker


@pytest.mark.slow
def test_a_checkpoint_with_pickled_code_is_refused_and_its_code_never_runs(malicious_checkpoint, trained_reverse_run, reverse_corpus, tmp_path):
    path, marker = malicious_checkpoint
    for load in (load_checkpoint, read_checkpoint, AtomicCheckpointIO().load_checkpoint):
        with pytest.raises(DataError, match=r"evil.ckpt: refused to load the checkpoint: .* could run code"):
            load(path)
    translate = run_module("seq2seq_lit.translate", f"ckpt_path={path}", stdin=b"a b c\n")
    assert_clean_exit(translate, 2, f"{path}: refused to load the checkpoint")
    args = TINY + reverse_data_overrides(reverse_corpus) + ["~logger", f"paths.cache_dir={tmp_path}/cache"]
    resume = run_module("seq2seq_lit.train", *args, f"hydra.run.dir={tmp_path}/run", f"ckpt_path={path}")
    assert_clean_exit(resume, 2, f"{path}: refused to load the checkpoint")
    assert not marker.exists()


def edited_copy(source: str, target: Path, edit) -> Path:
    checkpoint = torch.load(source, weights_only=True)
    edit(checkpoint)
    torch.save(checkpoint, target)
    return target


@pytest.mark.slow
def test_a_checkpoint_whose_parts_do_not_match_is_refused_with_a_clear_error(trained_reverse_run, tmp_path):
    _, metrics = trained_reverse_run
    best = metrics["best_model_path"]

    def rename(checkpoint):
        checkpoint["state_dict"]["net.renamed"] = checkpoint["state_dict"].pop("net.src_embed.weight")

    def reshape(checkpoint):
        checkpoint["hyper_parameters"]["embedding_size"] = 16

    def fewer_pieces(checkpoint):
        checkpoint[TOKENIZERS_KEY]["src_vocabulary"] = checkpoint[TOKENIZERS_KEY]["src_vocabulary"][:-1]
        checkpoint[TOKENIZERS_KEY]["joint"] = False

    cases = {
        "renamed.ckpt": (rename, r"renamed.ckpt: its weights do not fit .*missing net.src_embed.weight; unexpected net.renamed"),
        "reshaped.ckpt": (reshape, r"reshaped.ckpt: its weights do not fit .*net.src_embed.weight is \(\d+, 32\), expected \(\d+, 16\)"),
        "pieces.ckpt": (fewer_pieces, r"pieces.ckpt: its src sentencepiece model has \d+ pieces but the model's src embeddings"),
    }
    for name, (edit, message) in cases.items():
        with pytest.raises(DataError, match=message):
            load_checkpoint(edited_copy(best, tmp_path / name, edit))
    result = run_module("seq2seq_lit.translate", f"ckpt_path={tmp_path / 'renamed.ckpt'}", stdin=b"a b c\n")
    assert_clean_exit(result, 2, "renamed.ckpt: its weights do not fit")


def test_checkpoints_are_written_atomically_and_never_with_nan_weights(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, path)
    assert io.load_checkpoint(path)["global_step"] == 1

    def crash(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # interrupted in the middle of writing

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "global_step": 2}, path)
    monkeypatch.undo()
    assert io.load_checkpoint(path)["global_step"] == 1 and sorted(path.parent.iterdir()) == [path]

    with pytest.raises(NonFiniteError, match=r"step 3: the weights hold NaN or infinity \(w\), so .*last.ckpt was not written"):
        io.save_checkpoint({"state_dict": {"w": torch.tensor([1.0, float("nan")])}, "global_step": 3}, path)
    assert io.load_checkpoint(path)["global_step"] == 1


# -- non-finite loss -----------------------------------------------------------------------------------------------


@pytest.fixture
def nan_loss_at_step_3(monkeypatch):
    """The training loss is NaN at global step 3 (validation is untouched)."""
    token_nll = Seq2SeqLitModule._token_nll

    def patched(self, batch, label_smoothing, teacher_forcing_ratio):
        loss, num_tokens, weights = token_nll(self, batch, label_smoothing, teacher_forcing_ratio)
        return (loss * float("nan") if self.training and self.global_step == 3 else loss), num_tokens, weights

    monkeypatch.setattr(Seq2SeqLitModule, "_token_nll", patched)


def tiny_run_overrides(corpus: dict[str, Path], *extra: str) -> list[str]:
    return TINY + reverse_data_overrides(corpus) + [
        "~logger",
        "trainer.max_steps=6",
        "trainer.limit_val_batches=1",
        "test=false",
        "callbacks.attention_heatmaps=null",
        "callbacks.learning_rate_monitor=null",
        "callbacks.resume_checkpoint.every_n_train_steps=2",
        *extra,
    ]


def test_nonfinite_loss_skip_skips_that_update_and_names_the_step(nan_loss_at_step_3, reverse_corpus, tmp_path, caplog):
    from seq2seq_lit.train import train

    with caplog.at_level(logging.WARNING, logger="seq2seq_lit"):
        metrics = train(compose_train(tiny_run_overrides(reverse_corpus, "model.nonfinite_loss=skip"), tmp_path / "run"))
    assert metrics["global_step"] == 6
    assert "train/loss is nan at step 3 (epoch 0, batch 3): skipping this step's update" in caplog.text
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    # Adam counts the updates it applied to each parameter: 5 of the 6 steps.
    assert {int(state["step"]) for state in checkpoint["optimizer_states"][0]["state"].values()} == {5}
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values() if t.is_floating_point())


def test_nonfinite_loss_stop_ends_the_run_naming_the_step_and_keeps_the_last_good_checkpoint(nan_loss_at_step_3, reverse_corpus, tmp_path):
    from seq2seq_lit.train import train

    with pytest.raises(NonFiniteError, match=r"train/loss is nan at step 3 \(epoch 0, batch 3\): training stopped"):
        train(compose_train(tiny_run_overrides(reverse_corpus), tmp_path / "run"))
    checkpoints = list((tmp_path / "run" / "checkpoints").glob("*.ckpt"))
    assert [p.name for p in checkpoints] == ["last.ckpt"]
    checkpoint = torch.load(checkpoints[0], weights_only=True)
    assert checkpoint["global_step"] == 2  # saved before the NaN, and not after


def test_nonfinite_loss_stop_read_every_n_steps_names_the_step_and_writes_no_later_checkpoint(nan_loss_at_step_3, reverse_corpus, tmp_path):
    """The deferred check of accelerators (no host sync per step), forced on the CPU: the NaN of step 3 is read when
    the checkpoint of step 4 is due, which is then not written."""
    from seq2seq_lit.train import train

    expected = r"train/loss is nan at step 3 \(epoch 0, batch 3\): training stopped at step 4, before any later checkpoint"
    with pytest.raises(NonFiniteError, match=expected):
        train(compose_train(tiny_run_overrides(reverse_corpus, "model.nonfinite_check_every=5"), tmp_path / "run"))
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2


def test_the_deferred_loss_check_reads_every_n_steps_and_names_the_first_nonfinite_step():
    from seq2seq_lit.errors import ConfigError
    from seq2seq_lit.utils.nonfinite import NonFiniteWatch

    watch = NonFiniteWatch("stop", check_every=3)
    assert watch.update_allowed(torch.tensor(1.0), step=0, epoch=0, batch_idx=0)
    assert watch.update_allowed(torch.tensor(float("nan")), step=1, epoch=0, batch_idx=1)  # recorded, not read yet
    with pytest.raises(NonFiniteError, match=r"train/loss is nan at step 1 \(epoch 0, batch 1\): training stopped at step 2,"):
        watch.update_allowed(torch.tensor(float("inf")), step=2, epoch=0, batch_idx=2)  # read at step 3 of 3
    with pytest.raises(ConfigError, match=r"model.nonfinite_check_every=0: must be >= 1"):
        NonFiniteWatch("stop", check_every=0)


@pytest.mark.slow
def test_nan_weights_stop_the_run_before_a_broken_checkpoint_is_written(small_corpus, tmp_path):
    run_dir = tmp_path / "run"
    args = [a for a in resumable_run_args(small_corpus, run_dir) if "every_n_train_steps" not in a]
    result = run_module(
        "seq2seq_lit.train", *args, "callbacks.resume_checkpoint.every_n_train_steps=2",
        "+callbacks.nan._target_=tests.reliability_helpers.NaNWeightsAtStep", "+callbacks.nan.step=4",
    )
    assert_clean_exit(result, 2, "step 4: the weights hold NaN or infinity", "last.ckpt was not written")
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 2


# -- translate -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reverse_model(trained_reverse_run) -> Seq2SeqLitModule:
    return load_checkpoint(trained_reverse_run[1]["best_model_path"])


LINE = st.one_of(
    st.text(max_size=30),  # any characters: unknown scripts, emoji, controls, U+2028, "\r", ...
    st.text(alphabet=SYMBOLS + " ", max_size=20),  # in-vocabulary sentences
    st.sampled_from(["", " ", "\t", "\u3000", "\r", "\ufeff", "\x00"]),
    st.text(alphabet=SYMBOLS + " \u00e9\u4e2d", min_size=200, max_size=1500),  # very long lines
).filter(lambda line: "\n" not in line)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(lines=st.lists(LINE, max_size=10), batch_size=st.integers(1, 4))
def test_translate_keeps_one_output_line_per_input_line(reverse_model, tmp_path, lines, batch_size):
    outputs = translate_lines(reverse_model, lines, batch_size, max_src_length=60)
    assert len(outputs) == len(lines)
    assert all(out == "" for line, out in zip(lines, outputs) if not line.strip())
    assert not any("\n" in out for out in outputs)
    if lines and not any("\x00" in line for line in lines):  # through a file (where a NUL byte is refused), as the CLI reads it
        path = tmp_path / "input.txt"
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        results = translate_nbest(reverse_model, read_lines(path), batch_size, max_src_length=60)
        for n_best in (False, True):
            assert _format(results, n_best).count("\n") == len(lines)


def test_long_lines_are_truncated_with_a_warning_naming_them(reverse_model, caplog):
    lines = ["a b c", " ".join("abcdefghij" * 5), "", " ".join("jihgfedcba" * 8)]
    with caplog.at_level(logging.WARNING, logger="seq2seq_lit"):
        outputs = translate_lines(reverse_model, lines, max_src_length=20)
    assert len(outputs) == 4 and outputs[0] == "c b a" and outputs[2] == ""
    assert "2 input line(s) longer than 20 source pieces translated from their first 20 pieces only: line(s) 2, 4" in caplog.text

    location = torch.nn.Sequential(torch.nn.Identity())
    location[0].max_source_length = 128  # a location attention attends over at most 128 positions, EOS included
    assert source_limit(location, 250) == 127 and source_limit(location, 50) == 50 and source_limit(torch.nn.Identity()) is None


@pytest.mark.slow
def test_translate_refuses_invalid_utf8_on_stdin_with_the_line(trained_reverse_run):
    result = run_module("seq2seq_lit.translate", f"ckpt_path={trained_reverse_run[1]['best_model_path']}", stdin=b"a b\nc \xff d\n")
    assert_clean_exit(result, 2, "<stdin>:2: invalid UTF-8 at byte 2 of the line")


# -- W&B -------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_unreachable_wandb_falls_back_to_offline_and_keeps_what_is_logged(monkeypatch, tmp_path):
    import wandb
    from omegaconf import OmegaConf

    from seq2seq_lit.utils.loggers import finish_loggers, instantiate_loggers

    with socket.socket() as s:  # a port nothing listens on: connections are refused, no network needed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "5")
    cfg = OmegaConf.create(
        {"wandb": {"_target_": "lightning.pytorch.loggers.WandbLogger", "project": "p", "save_dir": str(tmp_path), "offline": None}}
    )
    wandb.teardown()  # wandb keeps the settings of its first run in a process (earlier tests ran offline)
    try:
        loggers = instantiate_loggers(cfg)
        assert loggers[0]._offline
        loggers[0].log_metrics({"val/bleu": 12.5}, step=3)
        finish_loggers(loggers)
    finally:
        wandb.teardown()  # forget the online settings wandb cached for this process
    run_file = next(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    assert wandb_logged_values(run_file, "val/bleu") == [12.5, 12.5]  # history and summary
