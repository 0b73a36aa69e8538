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

import errno
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from seq2seq_lit.data import ParallelText
from seq2seq_lit.data.store import open_store
from seq2seq_lit.errors import ConfigError
from seq2seq_lit.utils import full_disk
from seq2seq_lit.utils.atomic import atomic_open
from seq2seq_lit.utils.entry import user_error
from seq2seq_lit.utils.full_disk import free_bytes

from .conftest import TINY, reverse_data_overrides, write_reverse_corpus
from .process_helpers import Finished, finish_group, group_alive, run_group, start_group


def corpus_in(folder: Path, sizes: dict[str, int], seed: int) -> dict[str, Path]:
    """The reverse task's files in ``folder`` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    return write_reverse_corpus(folder, sizes, seed=seed)


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


# -- 8 and 12. s2s-prepare: killed, its encoding workers die with it; Ctrl+C is one line and exit 130 ---------------


@pytest.fixture(scope="module")
def large_corpus(tmp_path_factory) -> dict[str, Path]:
    """400,000 training pairs: 8 chunks of 50,000 to encode, several seconds of work for the encoding workers."""
    return write_reverse_corpus(tmp_path_factory.mktemp("large"), {"train": 400_000, "val": 20, "test": 20}, seed=4)


def prepare_args(corpus: dict[str, Path], tmp_path: Path) -> list[str]:
    return ["python", "-m", "seq2seq_lit.prepare", *reverse_data_overrides(corpus), f"paths.cache_dir={tmp_path / 'cache'}",
            f"hydra.run.dir={tmp_path / 'run'}"]


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def wait_for_encoding_workers(pid: int, n: int = 2, timeout: float = 120) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(workers := children(pid)) >= n:
            return workers
        time.sleep(0.05)
    raise AssertionError(f"no {n} encoding workers of process {pid} after {timeout} s")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (ProcessLookupError, FileNotFoundError):
        return False
    return state != "Z"  # a zombie has ended; its parent (here the test's init) has not reaped it yet


needs_workers = pytest.mark.skipif(
    not Path("/proc/self/task").is_dir() or len(os.sched_getaffinity(0)) < 2,
    reason="encoding workers run on 2 or more cores; their processes are read from Linux /proc",
)


@pytest.mark.slow
@needs_workers
@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM"])
def test_08_prepare_killed_while_encoding_leaves_no_worker_behind(signal_name, large_corpus, tmp_path):
    proc = start_group(*prepare_args(large_corpus, tmp_path))
    try:
        workers = wait_for_encoding_workers(proc.pid)
        os.kill(proc.pid, getattr(signal, signal_name))  # the parent only, as a scheduler or the OOM killer would
        proc.communicate(timeout=60)
        deadline = time.monotonic() + 10
        while any(alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [w for w in workers if alive(w)], "encoding workers outlived their parent"
    finally:
        if group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
    store_root = tmp_path / "cache" / "corpus_store"
    assert not [p for p in store_root.iterdir() if not p.name.startswith(".")]  # no half-built store to open


@pytest.mark.slow
@needs_workers
def test_12_sigint_to_prepare_while_encoding_is_one_line_and_exit_130(large_corpus, tmp_path):
    proc = start_group(*prepare_args(large_corpus, tmp_path))
    try:
        workers = wait_for_encoding_workers(proc.pid)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl+C: the terminal signals the whole foreground process group
        result = finish_group(proc, timeout=120)
    finally:
        if group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
    assert result.returncode == 130, result.stderr[-3000:]
    assert "Traceback" not in result.stderr + result.stdout
    assert [line for line in result.stderr.splitlines() if line.startswith("interrupted:")] == [
        "interrupted: SIGINT (Ctrl+C) received: stopped; every file is written whole or not at all, so none was left "
        "half-written"
    ]
    assert not result.left_over and not [w for w in workers if alive(w)]
    store_root = tmp_path / "cache" / "corpus_store"
    assert not list(store_root.iterdir()) or all(p.suffix == ".lock" for p in store_root.iterdir())  # no temporary folder


# -- 11 and 12. s2s-translate: piped into head, and Ctrl+C while it waits for a line -------------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """last.ckpt of a 5-step run on the reverse task (its translations do not matter here)."""
    folder = tmp_path_factory.mktemp("tiny_ckpt")
    corpus = write_reverse_corpus(folder, {"train": 200, "val": 10, "test": 10}, seed=5)
    args = ["python", "-m", "seq2seq_lit.train", *TINY, *reverse_data_overrides(corpus), "~logger", "test=false",
            "trainer.max_steps=5", "trainer.limit_val_batches=1", "callbacks.attention_heatmaps=null",
            "callbacks.sample_translations=null", "callbacks.learning_rate_monitor=null",
            f"paths.cache_dir={folder / 'cache'}", f"hydra.run.dir={folder / 'run'}"]
    result = run_group(*args, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder / "run" / "checkpoints" / "last.ckpt"


@pytest.mark.slow
def test_11_translate_piped_into_head_ends_quietly(tiny_checkpoint, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("".join(f"a b c {i % 7}\n" for i in range(2000)))
    script = (f"set -o pipefail; cat {source} | {sys.executable} -m seq2seq_lit.translate ckpt_path={tiny_checkpoint} "
              f"hydra.run.dir={tmp_path / 'run'} | head -1; echo \"status ${{PIPESTATUS[1]}}\" >&2")
    result = run_group("bash", "-c", script, timeout=300)
    assert len(result.stdout.splitlines()) == 1
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr and "Exception ignored" not in result.stderr
    status = result.stderr.strip().splitlines()[-1]
    assert status in ("status 0", "status 141"), result.stderr[-3000:]


@pytest.mark.slow
def test_12_sigint_to_interactive_translate_is_one_line_and_exit_130(tiny_checkpoint, tmp_path):
    proc = start_group("python", "-m", "seq2seq_lit.translate", f"ckpt_path={tiny_checkpoint}",
                       f"hydra.run.dir={tmp_path / 'run'}", stdin=subprocess.PIPE)
    try:
        proc.stdin.write(b"a b c\n")
        proc.stdin.flush()
        assert proc.stdout.readline()  # a translation: it is waiting for the next line now
        os.killpg(proc.pid, signal.SIGINT)
        result = finish_group(proc, timeout=60)
    finally:
        if group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
    assert result.returncode == 130, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "KeyboardInterrupt" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("interrupted:")] == [
        "interrupted: SIGINT (Ctrl+C) received: stopped; every file is written whole or not at all, so none was left "
        "half-written"
    ]


# -- 9. a real full disk: one line and exit 2, wherever the write fails -----------------------------------------------


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A real 5 MB tmpfs (needs root, as CI runs): skipped where it cannot be mounted, where the patch-based tests
    below still cover the classification."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(mount_point)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}): the patch-based tests cover the errors")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` with a file until ``leave`` bytes are free."""
    free = free_bytes(disk)
    assert free is not None and free > leave
    with open(disk / "filler", "wb") as f:
        f.write(b"\0" * (free - leave))
    assert free_bytes(disk) <= leave + 8192


def assert_one_line_full_disk(result, path: Path) -> None:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert errors[0].startswith(f"error: {path}") and "No space left on device (ENOSPC); the file was not written" in errors[0]
    assert "Fix: free space on that disk" in errors[0]


@pytest.mark.slow
def test_09_a_store_built_on_a_full_disk_is_one_line_and_exit_2(small_disk, tmp_path):
    corpus = corpus_in(tmp_path / "corpus", {"train": 40_000, "val": 20, "test": 20}, seed=6)
    fill(small_disk, 200_000)  # the store of 40,000 pairs needs about 1 MB
    store_dir = small_disk / "stores"
    args = prepare_args(corpus, tmp_path)[:-2] + [f"paths.cache_dir={tmp_path / 'cache'}", f"data.store_dir={store_dir}",
                                                  f"hydra.run.dir={tmp_path / 'run'}"]
    result = run_group(*args, timeout=300)
    assert_one_line_full_disk(result, store_dir)
    assert "No space left on device (ENOSPC)" in (tmp_path / "run" / "prepare.log").read_text()
    assert [p.name for p in store_dir.iterdir()] == [next(store_dir.glob(".*.lock")).name]  # no half-built store


@pytest.mark.slow
def test_09_a_checkpoint_saved_on_a_full_disk_is_one_line_and_exit_2_in_train_log(tiny_checkpoint, small_disk, tmp_path):
    corpus = corpus_in(tmp_path / "corpus", {"train": 200, "val": 10, "test": 10}, seed=5)
    fill(small_disk, tiny_checkpoint.stat().st_size // 2)  # room for the logs, not for a checkpoint
    run_dir = small_disk / "run"
    args = ["python", "-m", "seq2seq_lit.train", *TINY, *reverse_data_overrides(corpus), "~logger", "test=false",
            "trainer.max_steps=5", "trainer.limit_val_batches=1", "callbacks.attention_heatmaps=null",
            "callbacks.sample_translations=null", "callbacks.learning_rate_monitor=null",
            "callbacks.resume_checkpoint.every_n_train_steps=2", f"paths.cache_dir={tmp_path / 'cache'}",
            f"hydra.run.dir={run_dir}"]
    result = run_group(*args, timeout=300)
    checkpoints = run_dir / "checkpoints"
    assert_one_line_full_disk(result, checkpoints)
    assert "No space left on device (ENOSPC); the file was not written" in (run_dir / "train.log").read_text()
    assert not list(checkpoints.glob(".*.tmp"))  # the failed write left no temporary file


@pytest.mark.slow
def test_09_average_into_a_full_disk_is_one_line_and_exit_2(tiny_checkpoint, small_disk, tmp_path):
    fill(small_disk, tiny_checkpoint.stat().st_size // 4)
    output = small_disk / "avg.ckpt"
    result = run_group("python", "-m", "seq2seq_lit.average", f"inputs=[{tiny_checkpoint}]", f"output={output}",
                       f"hydra.run.dir={tmp_path / 'run'}", timeout=300)
    assert_one_line_full_disk(result, output)
    assert not output.exists() and not list(small_disk.glob(".*.tmp"))


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0"),  # torch.save
        OSError(None, None),  # numpy's short write
        OSError(errno.ENOSPC, "No space left on device"),
    ],
    ids=["torch.save", "numpy", "ENOSPC"],
)
def test_09_a_write_that_fails_on_a_full_disk_is_enospc_naming_the_file(error, tmp_path, monkeypatch):
    """The fallback where no tmpfs can be mounted: the errors as torch.save and numpy raise them, the disk full."""
    monkeypatch.setattr(full_disk, "free_bytes", lambda folder: 4096)
    target = tmp_path / "x.ckpt"
    with pytest.raises(OSError) as raised:
        with atomic_open(target, "wb") as f:
            f.write(b"partial")
            raise error
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(target)
    assert str(user_error(raised.value)).startswith(f"{target}: No space left on device (ENOSPC); the file was not written")
    assert not list(tmp_path.iterdir())  # no temporary file, no partial target


def test_09_the_same_errors_with_space_left_stay_what_they_are(tmp_path, monkeypatch):
    monkeypatch.setattr(full_disk, "free_bytes", lambda folder: 10 << 30)
    with pytest.raises(RuntimeError, match="unexpected pos"):
        with atomic_open(tmp_path / "x.ckpt", "wb"):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")
    assert user_error(RuntimeError("unexpected pos")) is None  # a bug, not a user error: a traceback


# -- 16. a corpus store shared by a group ------------------------------------------------------------------------------

STORE_SETTINGS = {"joint": True, "per_side_vocab": True, "vocab_size": 24, "model_type": "bpe",
                  "character_coverage": 1.0, "input_sentence_size": 1_000_000}


@pytest.mark.parametrize("umask, folder_mode, lock_mode", [(0o002, 0o775, 0o664), (0o022, 0o755, 0o644)])
def test_16_store_folders_and_lock_take_their_modes_from_the_umask(umask, folder_mode, lock_mode, tmp_path):
    paths = corpus_in(tmp_path / "corpus", {"train": 300, "val": 10, "test": 10}, seed=8)
    previous = os.umask(umask)
    try:
        store = open_store(ParallelText(**paths), {**STORE_SETTINGS, "cache_dir": str(tmp_path / "spm")}, 12,
                           tmp_path / "stores")
    finally:
        os.umask(previous)
    (lock,) = (tmp_path / "stores").glob(".*.lock")
    assert stat.S_IMODE(store.path.stat().st_mode) == folder_mode  # not mkdtemp's 0o700
    assert stat.S_IMODE((tmp_path / "stores").stat().st_mode) == folder_mode
    assert stat.S_IMODE(lock.stat().st_mode) == lock_mode
    assert {stat.S_IMODE(p.stat().st_mode) for p in store.path.iterdir()} == {lock_mode}


def test_16_a_store_folder_this_user_cannot_use_is_a_config_error_naming_data_store_dir(tmp_path, monkeypatch):
    paths = corpus_in(tmp_path / "corpus", {"train": 300, "val": 10, "test": 10}, seed=8)

    def refused(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "stores"))

    monkeypatch.setattr(Path, "mkdir", refused)
    with pytest.raises(ConfigError) as raised:
        open_store(ParallelText(**paths), {**STORE_SETTINGS, "cache_dir": None}, 12, tmp_path / "stores")
    message = str(raised.value)
    assert message.startswith(f"data.store_dir={tmp_path / 'stores'}: ") and "Permission denied" in message
    assert "Fix: ask its owner" in message and "or pass data.store_dir=" in message
    assert "paths.output_dir" not in message


SHARED_GROUP = 100  # "users" on Debian and most distributions; the second user gets it as a supplementary group
SECOND_USER = 65534  # nobody


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to act as a second user")
def test_16_a_store_built_by_one_user_is_opened_and_extended_by_another_of_its_group(tmp_path):
    shared = Path(tempfile.mkdtemp(prefix="s2s_shared_", dir="/tmp"))  # outside pytest's 0700 root-only folder
    try:
        os.chown(shared, 0, SHARED_GROUP)
        os.chmod(shared, 0o2775)  # setgid: what is created in it belongs to the group, as on a shared cache
        corpus = corpus_in(shared / "corpus", {"train": 300, "val": 10, "test": 10}, seed=9)

        def prepare(name: str, *extra: str, user: int = 0, groups: tuple[int, ...] = ()) -> Finished:
            """s2s-prepare as ``user`` (root: the owner) with umask 002, each user in a folder of their own."""
            args = [*reverse_data_overrides(corpus), *extra, f"paths.cache_dir={shared / name / 'cache'}",
                    f"data.store_dir={shared / 'stores'}", f"hydra.run.dir={shared / name / 'run'}"]
            if user == 0:
                return run_group("python", "-m", "seq2seq_lit.prepare", *args, timeout=300, umask=0o002)
            (shared / name).mkdir(exist_ok=True)  # the user's own (run_as_user imports as root, which may write there)
            os.chown(shared / name, user, user)
            as_user = ["python", str(Path(__file__).parent / "run_as_user.py"), str(user), str(user),
                       ",".join(map(str, groups)), "002", "seq2seq_lit.prepare"]
            return run_group(*as_user, *args, timeout=300, HOME=str(shared / name))

        first = prepare("owner")
        assert first.returncode == 0, first.stderr[-3000:]
        (store,) = [p for p in (shared / "stores").iterdir() if not p.name.startswith(".")]
        assert stat.S_IMODE(store.stat().st_mode) & 0o070 == 0o070

        colleague = {"user": SECOND_USER, "groups": (SHARED_GROUP,)}
        opened = prepare("colleague", **colleague)
        assert opened.returncode == 0, opened.stderr[-3000:]
        assert "damaged" not in opened.stdout + opened.stderr and f"at {store}" in opened.stdout
        extended = prepare("colleague", "data.tokenizer.vocab_size=20", **colleague)  # a new store in the same folder
        assert extended.returncode == 0, extended.stderr[-3000:]

        stranger = prepare("stranger", "data.tokenizer.vocab_size=22", user=SECOND_USER)
        assert stranger.returncode == 2 and "Traceback" not in stranger.stderr
        assert f"error: data.store_dir={shared / 'stores'}: " in stranger.stderr
        assert "paths.output_dir" not in stranger.stderr
    finally:
        shutil.rmtree(shared, ignore_errors=True)
