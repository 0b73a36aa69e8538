"""Helpers for the process, signal and disk tests (tests/test_faults_processes.py): a callback that signals one rank
at a chosen point of training, and a runner that starts a command in its own process group, so that a test can tell
whether anything of it is left (an orphaned worker or rank) and can always kill all of it."""

from __future__ import annotations

import os
import signal as signals
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L

from .conftest import REPO


class SignalRankAt(L.Callback):
    """Send ``signal`` to this process if it is rank ``rank``, once, at ``hook`` (``train_batch_end``,
    ``validation_batch_start`` or ``save_checkpoint``) of the first training step >= ``step``: a signal that reaches
    one rank only, in the middle of what it is doing (a validation's gathers, a checkpoint's). The time it sent the
    signal (``time.time()``) goes into the file ``stamp``, if given."""

    def __init__(self, rank: int, step: int, signal: str = "SIGTERM", hook: str = "train_batch_end",
                 stamp: str | None = None) -> None:
        if hook not in ("train_batch_end", "validation_batch_start", "save_checkpoint"):
            raise ValueError(f"hook={hook!r}")
        self.rank, self.step, self.hook, self.stamp = rank, step, hook, stamp
        self.signum = getattr(signals, signal)
        self.sent = False

    def _maybe_send(self, trainer: L.Trainer, hook: str) -> None:
        if self.sent or hook != self.hook or trainer.global_rank != self.rank or trainer.sanity_checking:
            return
        if trainer.global_step >= self.step:
            self.sent = True
            if self.stamp:
                Path(self.stamp).write_text(repr(time.time()))
            os.kill(os.getpid(), self.signum)

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        self._maybe_send(trainer, "train_batch_end")

    def on_validation_batch_start(self, trainer: L.Trainer, *args: object) -> None:
        self._maybe_send(trainer, "validation_batch_start")

    def on_save_checkpoint(self, trainer: L.Trainer, *args: object) -> None:
        self._maybe_send(trainer, "save_checkpoint")


@dataclass
class Finished:
    """How a command started by :func:`run_group` ended."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    ended: float  # time.time() when it exited
    left_over: bool  # some process of its group was still running after it exited


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def start_group(*args: str, stdin: int | None = subprocess.DEVNULL, user: int | None = None, group: int | None = None,
                extra_groups: list[int] | None = None, umask: int = -1, **env: str) -> subprocess.Popen:
    """Start ``args`` (``python`` stands for this interpreter) from the repository root in a new session and process
    group, one thread per process, W&B offline; as another ``user`` / ``group`` (root only) and with a ``umask`` if
    given."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true",
                   "PYTHONFAULTHANDLER": "1", **env}
    command = [sys.executable if a == "python" else a for a in args]
    return subprocess.Popen(command, cwd=REPO, env=environment, stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, user=user, group=group,
                            extra_groups=extra_groups, umask=umask)


def finish_group(proc: subprocess.Popen, timeout: float, start: float | None = None) -> Finished:
    """Wait for ``proc`` (from :func:`start_group`) up to ``timeout`` seconds; on a timeout SIGKILL its whole group
    and raise ``TimeoutError``. ``left_over``: a process of the group outlived ``proc`` by more than 5 s."""
    start = time.monotonic() if start is None else start
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signals.SIGABRT)  # faulthandler (PYTHONFAULTHANDLER) prints where it hangs
        time.sleep(2)
        os.killpg(proc.pid, signals.SIGKILL)
        out, err = proc.communicate()
        raise TimeoutError(f"still running after {timeout} s; killed. stderr: {err.decode(errors='replace')[-6000:]}")
    seconds, ended = time.monotonic() - start, time.time()
    deadline = time.monotonic() + 5
    while group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    left_over = group_alive(proc.pid)
    if left_over:
        os.killpg(proc.pid, signals.SIGKILL)
    return Finished(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"), seconds, ended, left_over)


def run_group(*args: str, timeout: float = 120, **options: Any) -> Finished:
    """:func:`start_group` (``options``: its keyword arguments, and environment variables) then :func:`finish_group`."""
    start = time.monotonic()
    return finish_group(start_group(*args, **options), timeout, start)


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())
