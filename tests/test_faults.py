"""Failure cases, one test each (issue 18): nothing that existed before a command is lost unless the command's purpose
is to change it, and every bad option, file or full disk ends in one line naming the key or file and a fix, exit 2.

The numbers are those of the list in docs/when-things-go-wrong.md.
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from seq2seq_lit.average import average
from seq2seq_lit.callbacks import ResumeCheckpoint
from seq2seq_lit.data import read_lines
from seq2seq_lit.data.tokenizer import train_sentencepiece
from seq2seq_lit.errors import ConfigError, DataError
from seq2seq_lit.inference.checkpoints import read_checkpoint
from seq2seq_lit.preflight import check_options
from seq2seq_lit.train import train
from seq2seq_lit.translate import _format, translate
from seq2seq_lit.utils.atomic import atomic_write_text, remove_orphaned_temporaries
from seq2seq_lit.utils.entry import RunInterrupted, run_entry_point, user_error

from .conftest import CONF_DIR, TINY, compose_train, reverse_data_overrides, run_module, write_reverse_corpus
from .test_reliability import assert_clean_exit


def compose_entry(config_name: str, overrides: list[str]) -> DictConfig:
    """The config of an inference entry point (translate, average) as its command line composes it."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def run_checkpoints(trained_reverse_run, tmp_path_factory) -> Path:
    """A copy of a trained run's checkpoint folder: last.ckpt (training state) and the best step checkpoint."""
    folder = tmp_path_factory.mktemp("faults") / "checkpoints"
    shutil.copytree(Path(trained_reverse_run[0].paths.output_dir) / "checkpoints", folder)
    return folder


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory) -> dict[str, Path]:
    """160 training pairs: epochs of 5 batches of 32."""
    return write_reverse_corpus(tmp_path_factory.mktemp("tiny"), {"train": 160, "val": 20, "test": 20})


def quick_run(corpus: dict[str, Path], *extra: str) -> list[str]:
    return TINY + reverse_data_overrides(corpus) + [
        "~logger",
        "trainer.max_steps=4",
        "trainer.limit_val_batches=1",
        "test=false",
        "callbacks.attention_heatmaps=null",
        "callbacks.sample_translations=null",
        "callbacks.learning_rate_monitor=null",
        *extra,
    ]


# -- 1. averaging into a training checkpoint or an input -------------------------------------------------------------


@pytest.mark.slow
def test_01_average_never_overwrites_a_training_checkpoint_or_an_input_without_overwrite(run_checkpoints, tmp_path):
    folder = tmp_path / "checkpoints"
    shutil.copytree(run_checkpoints, folder)
    last, best = folder / "last.ckpt", next(folder.glob("step*.ckpt"))
    before = {p: digest(p) for p in (last, best)}
    result = run_module("seq2seq_lit.average", f"ckpt_dir={folder}", "last=1", f"output={last}")
    assert_clean_exit(result, 2, f"output={last} is a training checkpoint", "overwrite=true")
    with pytest.raises(ConfigError, match=r"is also the input inputs\[1\]"):
        average(compose_entry("average.yaml", [f"inputs=[{last},{best}]", f"output={best}"]))
    assert {p: digest(p) for p in before} == before

    average(compose_entry("average.yaml", [f"inputs=[{last},{best}]", f"output={best}", "overwrite=true"]))
    assert "seq2seq_lit_averaged" in read_checkpoint(best)  # asked for explicitly: done, and atomically


# -- 2. a refused resume keeps the run's config record ---------------------------------------------------------------


@pytest.mark.slow
def test_02_a_refused_resume_leaves_the_runs_hydra_record_as_it_was(run_checkpoints, tiny_corpus, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(run_checkpoints, run_dir / "checkpoints")
    (run_dir / ".hydra").mkdir()
    record = run_dir / ".hydra" / "overrides.yaml"
    record.write_text("- model.embedding_size=32\n")
    args = [*quick_run(tiny_corpus), "model.embedding_size=16", "ckpt_path=last", f"hydra.run.dir={run_dir}"]
    result = run_module("seq2seq_lit.train", *args)
    assert_clean_exit(result, 2, "the checkpoint's weights do not fit the configured model", ".hydra/overrides.yaml")
    assert record.read_text() == "- model.embedding_size=32\n"
    assert "model.embedding_size=16" in (run_dir / ".hydra" / "attempt-2" / "overrides.yaml").read_text()


# -- 3. translate's output: checked before decoding, written atomically ----------------------------------------------


def test_03_translate_output_is_checked_first_and_never_left_partial(trained_reverse_run, tmp_path, monkeypatch):
    ckpt = trained_reverse_run[1]["best_model_path"]
    source, output = tmp_path / "in.txt", tmp_path / "out.txt"
    source.write_text("a b c\nd e\n")
    output.write_text("old 1\nold 2\n")
    missing = tmp_path / "no" / "out.txt"
    with pytest.raises(ConfigError, match=rf"output={missing}: the folder .* does not exist"):
        translate(compose_entry("translate.yaml", [f"ckpt_path={ckpt}", f"input={source}", f"output={missing}"]))
    with pytest.raises(ConfigError, match="is also the input input"):
        translate(compose_entry("translate.yaml", [f"ckpt_path={ckpt}", f"input={source}", f"output={source}"]))

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError) as failure:
        translate(compose_entry("translate.yaml", [f"ckpt_path={ckpt}", f"input={source}", f"output={output}"]))
    message = str(user_error(failure.value))
    assert message.startswith(f"{output}: No space left on device (ENOSPC)") and "Fix: free space" in message
    assert output.read_text() == "old 1\nold 2\n" and source.read_text() == "a b c\nd e\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.txt"]  # no temporary file left


# -- 4. validation cadence on any corpus size ------------------------------------------------------------------------


@pytest.mark.parametrize("cadence", ["+trainer.val_check_interval=7", "trainer.check_val_every_n_epoch=2"])
def test_04_validation_cadence_longer_than_an_epoch_trains_and_validates(cadence, tiny_corpus, tmp_path):
    # Epochs of 5 batches: 7 steps is more than one epoch, and the plateau scheduler reads val/bleu.
    cfg = compose_train(quick_run(tiny_corpus, "trainer.max_steps=14", cadence), tmp_path / "run")
    metrics = train(cfg)
    assert metrics["global_step"] == 14 and "val/bleu" in metrics
    checkpoints = tmp_path / "run" / "checkpoints"
    assert (checkpoints / "last.ckpt").is_file() and list(checkpoints.glob("step*.ckpt"))


# -- 5. the test split is checked before training ---------------------------------------------------------------------


def test_05_a_missing_test_file_stops_the_run_before_the_first_step(tiny_corpus, tmp_path):
    missing = tmp_path / "nowhere.src"
    cfg = compose_train(quick_run(tiny_corpus, "test=true", f"data.test_src={missing}"), tmp_path / "run")
    with pytest.raises(DataError, match=f"{missing}: file not found"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


# -- 6. bad option values and unknown options --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.optimizer.lr=-0.01", "model.optimizer.lr=-0.01: the learning rate must be a number > 0"),
        ("model.optimizer.lr=abc", "model.optimizer.lr='abc': the learning rate must be a number > 0"),
        ("+model.new_key=1", "model.new_key: not an option of seq2seq_lit.lit_module.Seq2SeqLitModule"),
        ("+model.optimizer.betaz=1", "model.optimizer.betaz: not an option of torch.optim.Adam"),
    ],
)
def test_06_bad_option_values_are_one_line_config_errors(override, message, tmp_path):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("+", r"\+")):
        check_options(compose_train(TINY + [override], tmp_path))


@pytest.mark.slow
def test_06_an_unknown_option_exits_2():
    result = run_module("seq2seq_lit.train", "model.no_such_option=1")
    assert_clean_exit(result, 2, "Could not override 'model.no_such_option'")


# -- 7. a full disk while training -------------------------------------------------------------------------------------


def test_07_a_full_disk_while_training_is_one_line_in_the_log(tiny_corpus, tmp_path, monkeypatch, caplog):
    cfg = compose_train(quick_run(tiny_corpus, "callbacks.resume_checkpoint.every_n_train_steps=2"), tmp_path / "run")

    real_fsync = os.fsync

    def full_disk_for_the_run(fd: int) -> None:  # the run's folder is full; the corpus store's cache folder is not
        if str(tmp_path / "run") in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk_for_the_run)
    with caplog.at_level(logging.ERROR, logger="seq2seq_lit"), pytest.raises(SystemExit) as exit_:
        run_entry_point(train, cfg)
    assert exit_.value.code == 2
    assert "No space left on device (ENOSPC); the file was not written. Fix: free space" in caplog.text
    assert "checkpoints/last.ckpt" in caplog.text or "checkpoints/step" in caplog.text
    assert not list((tmp_path / "run" / "checkpoints").glob(".*.tmp"))


# -- 8. a vocabulary too small ---------------------------------------------------------------------------------------


def test_08_a_vocabulary_smaller_than_the_alphabet_says_to_raise_it(tmp_path):
    with pytest.raises(ConfigError, match=r"vocab_size=5 is too small: .*raise data.tokenizer.vocab_size to \d+ or more"):
        train_sentencepiece(["a b c d e f g h"] * 50, vocab_size=5, cache_dir=None)


# -- 9. empty and text files named .ckpt -------------------------------------------------------------------------------


def test_09_an_empty_or_text_file_is_not_called_a_checkpoint_that_runs_code(tmp_path):
    empty, text = tmp_path / "empty.ckpt", tmp_path / "text.ckpt"
    empty.write_bytes(b"")
    text.write_text("not a checkpoint\n")
    with pytest.raises(DataError, match=r"empty.ckpt: an empty file \(0 bytes\), not a checkpoint"):
        read_checkpoint(empty)
    with pytest.raises(DataError, match=r"text.ckpt: not a PyTorch checkpoint \(it starts with the bytes 6e 6f 74 20") as e:
        read_checkpoint(text)
    assert "run code" not in str(e.value)


# -- 10. an output that is a folder -------------------------------------------------------------------------------------


def test_10_average_into_a_folder_is_refused_before_reading_anything(tmp_path):
    with pytest.raises(ConfigError, match=f"output={tmp_path}: a folder, not a file"):
        average(compose_entry("average.yaml", ["inputs=[missing.ckpt]", f"output={tmp_path}"]))


# -- 11. nothing to train ----------------------------------------------------------------------------------------------


def test_11_max_steps_0_is_nothing_to_train(tmp_path):
    with pytest.raises(ConfigError, match=r"trainer.max_steps=0: nothing to train"):
        check_options(compose_train(TINY + ["trainer.max_steps=0"], tmp_path))


# -- 12. small cases -----------------------------------------------------------------------------------------------------


def test_12_empty_input_gives_empty_output_from_a_file_and_from_stdin(trained_reverse_run, tmp_path, monkeypatch):
    ckpt = trained_reverse_run[1]["best_model_path"]
    empty, output = tmp_path / "empty.txt", tmp_path / "out.txt"
    empty.write_bytes(b"")
    assert translate(compose_entry("translate.yaml", [f"ckpt_path={ckpt}", f"input={empty}", f"output={output}"])) == []
    assert output.read_text() == ""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    assert translate(compose_entry("translate.yaml", [f"ckpt_path={ckpt}", f"output={output}"])) == []


def test_12_n_best_writes_n_lines_for_an_empty_input_line():
    assert _format([[]], n_best_format=True, n_best=3) == "0 |||  ||| 0.0000\n" * 3


@pytest.mark.parametrize(
    "data, message",
    [
        ("a b\n".encode("utf-16"), r"UTF-16 text .* iconv -f UTF-16 -t UTF-8"),
        ("a b\n".encode("utf-32"), r"UTF-32 text .* iconv -f UTF-32 -t UTF-8"),
        ("a b\n".encode("utf-16-le"), r"corpus.txt:1: a NUL byte .* iconv -f UTF-16LE"),
        (b"a b\nc \x00 d\n", r"corpus.txt:2: a NUL byte \(file offset 6\)"),
    ],
)
def test_12_nul_bytes_and_utf16_utf32_are_refused_with_the_fix(data, message, tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes(data)
    with pytest.raises(DataError, match=message):
        read_lines(path)


def test_12_orphaned_temporary_files_are_removed_with_a_log_line(tmp_path, caplog):
    dead = tmp_path / f".last.ckpt.{2**22 + 12345}.0123abcd.tmp"  # above the default pid_max: no such process
    alive = tmp_path / f".last.ckpt.{os.getpid()}.0123abcd.tmp"
    other = tmp_path / ".notes.tmp"
    for path in (dead, alive, other):
        path.write_bytes(b"x")
    with caplog.at_level(logging.INFO, logger="seq2seq_lit"):
        assert remove_orphaned_temporaries(tmp_path) == [dead]
    assert alive.exists() and other.exists() and f"removed {dead}" in caplog.text


def test_12_every_write_is_synced_to_disk(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    atomic_write_text(tmp_path / "out.txt", "x\n")
    assert len(synced) == 2  # the file, then its folder (the rename)


def test_12_a_second_sigint_stops_at_once_with_status_130(tmp_path):
    callback = ResumeCheckpoint(str(tmp_path))
    callback._on_signal(signal.SIGINT, None)  # the first: stop after the step, with a checkpoint
    with pytest.raises(RunInterrupted) as interrupted:
        callback._on_signal(signal.SIGINT, None)
    assert interrupted.value.signum == signal.SIGINT and "without saving a checkpoint" in str(interrupted.value)

    def task(cfg):
        raise interrupted.value

    with pytest.raises(SystemExit) as exit_:
        run_entry_point(task, OmegaConf.create())
    assert exit_.value.code == 130
