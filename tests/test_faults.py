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
import re
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

from .conftest import CONF_DIR, REPO, TINY, compose_train, reverse_data_overrides, run_module, write_reverse_corpus
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


@pytest.mark.parametrize("every", [3, 7])  # shorter and longer than an epoch of 5 batches
def test_04_the_plateau_scheduler_steps_once_per_validation_and_resumes_between_them(every, tiny_corpus, tmp_path):
    """With val_check_interval=N the plateau scheduler reads each validation once. Lightning's own step interval
    counts batches within an epoch, so it stepped on stale scores (N=3), or never (N=7, epochs of 5), and a run resumed
    between two validations stopped with "ReduceLROnPlateau conditioned on metric val/bleu which is not available"."""
    import torch

    run = tmp_path / "run"
    train(compose_train(quick_run(tiny_corpus, f"trainer.max_steps={2 * every}", f"+trainer.val_check_interval={every}"), run))
    resumed = quick_run(tiny_corpus, f"trainer.max_steps={4 * every}", f"+trainer.val_check_interval={every}", "ckpt_path=last")
    assert train(compose_train(resumed, run))["global_step"] == 4 * every
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    plateau = checkpoint["lr_schedulers"][0]
    assert plateau["last_epoch"] == 4, "one step per validation: at N, 2N (first run), 3N and 4N (resumed)"
    assert plateau["_last_lr"] and checkpoint["global_step"] == 4 * every


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
        ("model.optimizer.lr=-0.01", "model.optimizer.lr=-0.01: the learning rate must be a finite number > 0"),
        ("model.optimizer.lr=abc", "model.optimizer.lr='abc': the learning rate must be a finite number > 0"),
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


# == issue 26: nothing lost by any tool, and messages that point at the real fix =====================================
# test_26_NN is case NN of issue 26 (docs/when-things-go-wrong.md, "Guarantees").


@pytest.fixture(scope="module")
def tiny_run(tiny_corpus, tmp_path_factory) -> Path:
    """A finished 4-step run folder: metrics.json, checkpoints/last.ckpt and the best step checkpoint, and the
    .hydra/ record that a real run has."""
    output_dir = tmp_path_factory.mktemp("tiny_run") / "run"
    train(compose_train(quick_run(tiny_corpus, "test=true"), output_dir))
    (output_dir / ".hydra").mkdir()
    (output_dir / ".hydra" / "overrides.yaml").write_text("- model.embedding_size=32\n")
    (output_dir / "train.log").write_text("the run's log\n")
    return output_dir


def _pyproject_scripts() -> dict[str, str]:
    import tomllib

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    return {name: target.split(":")[0] for name, target in pyproject["project"]["scripts"].items()}


def _call_tool(module: str, option: str, value: Path, run: Path, corpus: dict[str, Path], work: Path) -> int | None:
    """Run ``module``'s task in this process with the output ``option`` set to ``value`` and every other argument a
    valid one; returns the exit status (None: it returned)."""
    from seq2seq_lit import align, compare, evaluate, gradients, prepare
    from seq2seq_lit.utils.entry import run_entry_point

    ckpt = str(run / "checkpoints" / "last.ckpt")
    src, tgt = corpus["test_src"], corpus["test_tgt"]
    data = reverse_data_overrides(corpus) + [f"paths.cache_dir={work / 'cache'}"]

    def entry(task, config_name: str, overrides: list[str]) -> None:
        run_entry_point(task, compose_entry(config_name, overrides))

    calls = {
        ("seq2seq_lit.train", "hydra.run.dir"): lambda: run_entry_point(train, compose_train(quick_run(corpus), value)),
        ("seq2seq_lit.translate", "output"): lambda: entry(translate, "translate.yaml", [f"ckpt_path={ckpt}", f"input={src}", f"output={value}"]),
        ("seq2seq_lit.translate", "alignment_output"): lambda: entry(
            translate, "translate.yaml", [f"ckpt_path={ckpt}", f"input={src}", f"output={work / 'out.txt'}", f"alignment_output={value}"]
        ),
        ("seq2seq_lit.evaluate", "output_dir"): lambda: entry(
            evaluate.evaluate, "evaluate.yaml", [*data, f"ckpt_path={ckpt}", f"output_dir={value}"]
        ),
        ("seq2seq_lit.average", "output"): lambda: entry(average, "average.yaml", [f"inputs=[{ckpt}]", f"output={value}"]),
        ("seq2seq_lit.compare", "--plot"): lambda: compare.main([str(run), "--plot", str(value)]),
        ("seq2seq_lit.compare", "--plot-length"): lambda: compare.main([str(run), "--plot-length", str(value)]),
        ("seq2seq_lit.align", "output"): lambda: entry(
            align.align, "align.yaml", [f"ckpt_path={ckpt}", f"src={src}", f"tgt={tgt}", f"output={value}"]
        ),
        ("seq2seq_lit.align", "scores_output"): lambda: entry(
            align.align, "align.yaml",
            [f"ckpt_path={ckpt}", f"src={src}", f"tgt={tgt}", f"output={work / 'links.txt'}", f"scores_output={value}"],
        ),
        ("seq2seq_lit.prepare", "data.store_dir"): lambda: entry(prepare.prepare, "prepare.yaml", [*data, f"data.store_dir={value}"]),
        ("seq2seq_lit.gradients", "output_dir"): lambda: entry(
            gradients.measure_gradients, "gradients.yaml", [*data, f"ckpt_path={ckpt}", f"output_dir={value}"]
        ),
    }
    try:
        calls[module, option]()
    except SystemExit as e:
        return e.code
    return None


@pytest.mark.slow
def test_26_every_tools_output_options_are_guarded(tiny_run, tiny_corpus, tmp_path, capsys):
    """Cases 1-4 as a class: every output option of every s2s-* console script, pointed at an input, a training
    checkpoint, a step checkpoint, a run's metrics.json or its .hydra record, exits 2 and changes nothing."""
    from seq2seq_lit.utils.output_guard import TOOL_OUTPUTS

    scripts = _pyproject_scripts()
    assert set(scripts.values()) == set(TOOL_OUTPUTS), "a console script without its outputs in TOOL_OUTPUTS"
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    corpus = {k: tmp_path / "corpus" / Path(p).name for k, p in tiny_corpus.items()}
    shutil.copytree(Path(tiny_corpus["train_src"]).parent, tmp_path / "corpus")
    targets = {
        "an input": corpus["test_src"],
        "a training checkpoint": run / "checkpoints" / "last.ckpt",
        "a step checkpoint": next((run / "checkpoints").glob("step*.ckpt")),
        "a run's metrics.json": run / "metrics.json",
        "a run's config record": run / ".hydra" / "overrides.yaml",
    }
    before = {p: digest(p) for p in targets.values()}
    for module, options in TOOL_OUTPUTS.items():
        for option in options:
            for what, target in targets.items():
                if what == "an input" and module in ("seq2seq_lit.average", "seq2seq_lit.compare"):
                    continue  # their inputs are checkpoints and run folders: the other targets
                work = tmp_path / f"work-{module}-{option}"
                work.mkdir(exist_ok=True)
                status = _call_tool(module, option, target, run, corpus, work)
                assert status == 2, f"{module} {option}={target} ({what}): exit {status}"
                assert {p: digest(p) for p in before} == before, f"{module} {option}= {what}: a file changed"
    err = capsys.readouterr().err
    assert "Traceback" not in err


@pytest.mark.parametrize("which", ["src", "gold"])
def test_26_01_align_output_over_its_source_or_gold_is_refused(which, tiny_run, tiny_corpus, tmp_path):
    from seq2seq_lit.align import align

    gold = tmp_path / "gold.talp"
    gold.write_text("".join("1-1\n" for _ in read_lines(tiny_corpus["test_src"])))
    target = Path(tiny_corpus["test_src"]) if which == "src" else gold
    before = digest(target)
    args = [f"ckpt_path={tiny_run / 'checkpoints' / 'last.ckpt'}", f"src={tiny_corpus['test_src']}",
            f"tgt={tiny_corpus['test_tgt']}", f"gold={gold}", f"output={target}"]
    with pytest.raises(ConfigError, match=rf"output={target} is also the input {which}"):
        align(compose_entry("align.yaml", args))
    assert digest(target) == before


def test_26_02_align_scores_output_over_a_checkpoint_is_refused(tiny_run, tiny_corpus, tmp_path):
    from seq2seq_lit.align import align

    last = tmp_path / "last.ckpt"
    shutil.copy(tiny_run / "checkpoints" / "last.ckpt", last)
    before = digest(last)
    args = [f"ckpt_path={tiny_run / 'checkpoints' / 'last.ckpt'}", f"src={tiny_corpus['test_src']}",
            f"tgt={tiny_corpus['test_tgt']}", f"output={tmp_path / 'links.txt'}", f"scores_output={last}"]
    with pytest.raises(ConfigError, match=rf"scores_output={last} is a training checkpoint"):
        align(compose_entry("align.yaml", args))
    assert digest(last) == before and not (tmp_path / "links.txt").exists()


@pytest.mark.parametrize("target", ["checkpoints/last.ckpt", "metrics.json"])
def test_26_03_compare_plot_over_a_runs_checkpoint_or_metrics_is_refused(target, tiny_run, tmp_path, capsys):
    from seq2seq_lit.compare import main as compare

    run = tmp_path / "runs" / "A"
    shutil.copytree(tiny_run, run)
    before = digest(run / target)
    with pytest.raises(SystemExit) as exit_:
        compare([str(tmp_path / "runs"), "--plot", str(run / target)])
    assert exit_.value.code == 2 and f"--plot={run / target} is " in capsys.readouterr().err
    assert digest(run / target) == before
    assert compare([str(tmp_path / "runs")]) == 0


def test_26_04_evaluate_into_a_training_runs_folder_keeps_its_metrics(tiny_run, tiny_corpus, tmp_path, capsys):
    from seq2seq_lit.evaluate import evaluate

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = digest(run / "metrics.json")
    args = [*reverse_data_overrides(tiny_corpus), f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", f"output_dir={run}"]
    with pytest.raises(SystemExit) as exit_:
        run_entry_point(evaluate, compose_entry("evaluate.yaml", args))
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"{run}'s metrics.json" in err and "Fix: pass output_dir=<a new folder>" in err
    assert digest(run / "metrics.json") == before and not (run / "hypotheses.txt").exists()
    evaluate(compose_entry("evaluate.yaml", [*args[:-1], f"output_dir={run / 'eval'}"]))  # the fix works
    assert (run / "eval" / "metrics.json").is_file()


def test_26_04_training_into_another_runs_folder_is_refused(tiny_run, tiny_corpus, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = {p: digest(p) for p in (run / "metrics.json", run / "checkpoints" / "last.ckpt")}
    with pytest.raises(ConfigError, match=r"hydra.run.dir=.*metrics.json.*Fix: pass hydra.run.dir=<a new folder>, or resume"):
        train(compose_train(quick_run(tiny_corpus), run))
    assert {p: digest(p) for p in before} == before


# -- 5. settings that read the validation score, with validation off: refused before step 1 ---------------------------


@pytest.mark.parametrize(
    "extra, named",
    [
        ([], "model.scheduler_config.monitor=val/bleu, callbacks.model_checkpoint.monitor=val/bleu read its score"),
        (["model/scheduler=constant", "callbacks=early_stopping"], "callbacks.model_checkpoint.monitor=val/bleu, callbacks.early_stopping.monitor=val/bleu"),
    ],
)
def test_26_05_validation_off_with_a_setting_that_reads_it_is_refused_before_step_1(extra, named, tiny_corpus, tmp_path):
    cfg = compose_train(quick_run(tiny_corpus, "trainer.limit_val_batches=0", *extra), tmp_path / "run")
    with pytest.raises(ConfigError, match=rf"trainer.limit_val_batches=0 turns validation off, but {named}") as e:
        train(cfg)
    assert "Fix: pass trainer.limit_val_batches=N (N > 0), or also " in str(e.value)
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before anything was trained


def test_26_05_validating_less_often_than_the_run_has_epochs_is_refused(tiny_corpus, tmp_path):
    cfg = compose_train(
        quick_run(tiny_corpus, "trainer.max_steps=-1", "trainer.max_epochs=2", "trainer.check_val_every_n_epoch=3"),
        tmp_path / "run",
    )
    with pytest.raises(ConfigError, match=r"trainer.check_val_every_n_epoch=3 with trainer.max_epochs=2 never validates, but model.scheduler_config.monitor=val/bleu") as e:
        train(cfg)
    assert "Fix: pass trainer.check_val_every_n_epoch=1, or also model/scheduler=constant" in str(e.value)
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before anything was trained


@pytest.mark.slow
def test_26_05_the_suggested_fix_trains(tiny_corpus, tmp_path):
    fix = ["trainer.limit_val_batches=0", "model/scheduler=constant", "callbacks.model_checkpoint=null"]
    metrics = train(compose_train(quick_run(tiny_corpus, *fix), tmp_path / "run"))
    assert metrics["global_step"] == 4 and (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.guided_alignment.weight=nan", r"model.guided_alignment.weight=nan: the guided-alignment loss weight must be a finite number >= 0"),
        ("model.dropout=1.5", r"model.dropout=1.5: the dropout probability must be a finite number in \[0, 1\)"),
        ("model/search=sample model.search.top_k=2.5", r"model.search.top_k=2.5: top-k \(0: all tokens\) must be a whole number >= 0"),
        ("data.batch_size=8.0", r"data.batch_size=8.0: the batch size must be a whole number >= 1"),
        ("model.optimizer.lr=inf", r"model.optimizer.lr=inf: the learning rate must be a finite number > 0"),
    ],
)
def test_26_14_17_numbers_are_checked_for_type_finiteness_and_range_before_step_1(override, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        check_options(compose_train(TINY + override.split(), tmp_path))


# -- 6. resuming a copied run folder: the best checkpoint follows the folder -----------------------------------------


@pytest.mark.slow
def test_26_06_a_resumed_copy_keeps_the_best_checkpoint_of_its_own_folder(tiny_corpus, tmp_path):
    # Validations at steps 2, 4, 6 (and 8, 10 after resuming); the best of the first run is one of the first three.
    args = ["+trainer.val_check_interval=2", "model/scheduler=constant", "test=true"]
    original = tmp_path / "original"
    train(compose_train(quick_run(tiny_corpus, "trainer.max_steps=6", *args), original))
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    resumed = [*quick_run(tiny_corpus, "trainer.max_steps=10", *args), "ckpt_path=last"]
    in_copy = train(compose_train(resumed, copy))
    in_place = train(compose_train(resumed, original))
    assert Path(in_copy["best_model_path"]).parent == copy / "checkpoints"
    assert Path(in_copy["best_model_path"]).name == Path(in_place["best_model_path"]).name
    assert in_copy["val/bleu_best"] == in_place["val/bleu_best"] and in_copy["test/bleu"] == in_place["test/bleu"]


# -- 10. resuming with another optimizer or schedule --------------------------------------------------------------------


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.optimizer._target_=torch.optim.SGD", "model.optimizer._target_=torch.optim.Adam, and this run configures torch.optim.SGD"),
        ("model/scheduler=constant", "model.scheduler._target_=torch.optim.lr_scheduler.ReduceLROnPlateau, and this run configures"),
        ("model.scheduler.warmup_steps=3", "model.scheduler.warmup_steps=0, and this run configures 3"),
    ],
)
def test_26_10_resuming_with_another_optimizer_or_schedule_is_one_line(override, message, tiny_run, tiny_corpus, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    cfg = compose_train(quick_run(tiny_corpus, "trainer.max_steps=6", "ckpt_path=last", override), run)
    with pytest.raises(ConfigError, match=re.escape(message) + ".*Fix: resume with the optimizer and schedule"):
        train(cfg)


# -- 13. a corrupt metrics.json in a compare folder ---------------------------------------------------------------------


def test_26_13_compare_leaves_out_a_run_with_a_corrupt_metrics_json(tiny_run, tmp_path, capsys):
    from seq2seq_lit.compare import main as compare

    for name in ("A", "B"):
        shutil.copytree(tiny_run, tmp_path / "runs" / name)
    (tmp_path / "runs" / "A" / "metrics.json").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    assert compare([str(tmp_path / "runs")]) == 0
    out, err = capsys.readouterr()
    assert "1 run(s)" in out and "B" in out
    assert f"warning: {tmp_path / 'runs' / 'A' / 'metrics.json'}: not a JSON metrics file" in err and "Traceback" not in err


# -- 14. a store folder that is a file, an empty ensemble --------------------------------------------------------------


def test_26_14_a_store_dir_that_is_a_file_is_one_line(tiny_corpus, tmp_path):
    from seq2seq_lit.prepare import prepare

    store = tmp_path / "store"
    store.write_text("not a folder\n")
    cfg = compose_entry("prepare.yaml", [*reverse_data_overrides(tiny_corpus), f"data.store_dir={store}",
                                         f"data.tokenizer.cache_dir={tmp_path / 'spm'}"])
    with pytest.raises(ConfigError, match=rf"data.store_dir={store}: a file, not a folder. Fix: pass data.store_dir=<a folder>"):
        prepare(cfg)
    assert store.read_text() == "not a folder\n"


def test_26_14_an_empty_ensemble_is_one_line(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("a b\n")
    with pytest.raises(ConfigError, match=r"ckpt_path=\[\]: no checkpoint. Fix: pass ckpt_path=FILE"):
        translate(compose_entry("translate.yaml", ["ckpt_path=[]", f"input={source}"]))


# -- 15. an ensemble of two vocabularies of the same size --------------------------------------------------------------


def test_26_15_an_ensemble_vocabulary_mismatch_names_the_first_differing_piece():
    from types import SimpleNamespace

    from seq2seq_lit.inference.ensemble import _vocabulary_difference

    a = train_sentencepiece(["a b c d e f g h"] * 50, vocab_size=16, model_type="char", cache_dir=None)
    b = train_sentencepiece(["a b c d e f g i"] * 50, vocab_size=16, model_type="char", cache_dir=None)
    ids = {"pad_id": 0, "bos_id": 2, "eos_id": 3}
    first = SimpleNamespace(tokenizers=SimpleNamespace(src=a, tgt=a), hparams=ids)
    other = SimpleNamespace(tokenizers=SimpleNamespace(src=b, tgt=a), hparams=ids)
    difference = _vocabulary_difference(first, other)
    assert difference.startswith(f"source vocabulary (the same size, {a.vocab_size} pieces, but id ")
    assert "'i' in it and 'h' in the first" in difference


# -- 17. messages that name the real cause ------------------------------------------------------------------------------


def test_26_17_a_gzip_file_cut_short_names_the_last_line_read(tmp_path):
    import gzip

    path = tmp_path / "train.de.gz"
    text = "".join(f"line {i} " + "x" * (i % 50) + "\n" for i in range(50_000)).encode()
    data = gzip.compress(text, compresslevel=1)
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"train.de.gz: not a complete gzip file .*; it breaks off after line (\d+)") as e:
        read_lines(path)
    line = int(re.search(r"after line (\d+)", str(e.value))[1])
    assert 10_000 < line < 50_000


def test_26_17_a_nul_byte_on_stdin_gives_its_line_offset_and_a_pipe_fix(monkeypatch):
    from seq2seq_lit.translate import _stdin_stream

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"a b\nc d\ne \x00 f\n")))
    lines = _stdin_stream()
    assert [next(lines), next(lines)] == ["a b", "c d"]
    with pytest.raises(DataError, match=r"<stdin>:3: a NUL byte \(file offset 10\)") as e:
        next(lines)
    assert "| iconv -f UTF-16LE -t UTF-8 | s2s-translate" in str(e.value) and "<stdin>.utf8" not in str(e.value)


def test_26_17_align_with_a_missing_gold_file_names_the_gold_option(tiny_run, tiny_corpus, tmp_path):
    from seq2seq_lit.align import align

    gold = tmp_path / "missing.talp"
    args = [f"ckpt_path={tiny_run / 'checkpoints' / 'last.ckpt'}", f"src={tiny_corpus['test_src']}",
            f"tgt={tiny_corpus['test_tgt']}", f"gold={gold}", f"output={tmp_path / 'links.txt'}"]
    with pytest.raises(ConfigError, match=rf"gold={gold}: no such file. Fix: pass the gold alignment file") as e:
        align(compose_entry("align.yaml", args))
    assert "prepare" not in str(e.value)


# -- 18. SEQ2SEQ_DATA_DIR set to a folder that does not exist ----------------------------------------------------------


def test_26_18_a_missing_data_dir_is_an_error_not_a_download(tmp_path, monkeypatch):
    from seq2seq_lit.data import multi30k

    monkeypatch.setattr(multi30k, "fetch_gzip", lambda *a, **k: pytest.fail("downloaded"))
    monkeypatch.setenv("SEQ2SEQ_DATA_DIR", "../shared/data-nowhere")
    with pytest.raises(ConfigError, match=r"SEQ2SEQ_DATA_DIR=../shared/data-nowhere: no such folder .*Fix: set SEQ2SEQ_DATA_DIR to the absolute path"):
        multi30k.Multi30k(cache_dir=tmp_path).prepare()


# -- 19. a corpus file changed in place, size and mtime kept -----------------------------------------------------------


def test_26_19_store_hash_files_notices_a_file_changed_in_place(tmp_path, monkeypatch):
    from seq2seq_lit.data import ParallelText
    from seq2seq_lit.data import store as store_module
    from seq2seq_lit.data.store import open_store

    monkeypatch.setattr(store_module, "_SAMPLE_BYTES", 8)  # sampled: bytes 0-7, the middle 8 and the last 8

    (tmp_path / "corpus").mkdir()
    paths = write_reverse_corpus(tmp_path / "corpus", {"train": 200, "val": 20, "test": 20})
    settings = {"joint": True, "per_side_vocab": True, "vocab_size": 24, "model_type": "bpe", "character_coverage": 1.0,
                "input_sentence_size": 1_000_000, "cache_dir": str(tmp_path / "spm")}

    def store(hash_files: bool):
        return open_store(ParallelText(**paths), settings, 12, tmp_path / "store", hash_files=hash_files)

    before, hashed = store(False), store(True)
    target, stat = paths["val_tgt"], os.stat(paths["val_tgt"])
    text = target.read_bytes()
    k = next(i for i in range(20, len(text)) if text[i : i + 1].isalpha())  # a letter outside the sampled bytes
    target.write_bytes(text[:k] + (b"b" if text[k : k + 1] == b"a" else b"a") + text[k + 1 :])  # the same size
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert store(False).path == before.path  # the documented trade-off: size and mtime kept, the store is reused
    changed = store(True)
    assert changed.path != hashed.path
    lines = lambda s: [list(s.dataset("val").tgt[i]) for i in range(20)]  # noqa: E731
    assert lines(changed) != lines(hashed)  # built from the changed text
