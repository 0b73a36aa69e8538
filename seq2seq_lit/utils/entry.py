"""What every entry point does around its task: user errors become one clear message and exit status 2.

User errors are :class:`~seq2seq_lit.errors.Seq2SeqError`, Lightning's ``MisconfigurationException`` (a bad
``trainer.*`` value), the OS errors of a full disk or a folder one cannot write (ENOSPC, EDQUOT, EACCES, EPERM, EROFS),
and Hydra's errors in composing the command line (an unknown option, a bad value): all exit 2 with one line, also
logged (into ``train.log`` for training). Anything else is a bug: a traceback, exit 1.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import signal
import stat
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError, Seq2SeqError

log = logging.getLogger(__name__)

CONFIG_MODULE = "seq2seq_lit.conf"
"""The Hydra configs as a Python package: the repository's top-level ``conf/``, shipped in the wheel under this name
(``pyproject.toml`` maps it). Every entry point, the notebook and the tests compose from here."""

CONFIG_PATH = f"pkg://{CONFIG_MODULE}"
"""``hydra.main(config_path=...)`` of every entry point: a package path, found in wheel and editable installs alike
(a folder next to this file does not exist in an editable install, and a relative ``"../conf"`` is resolved as the
Python module ``conf`` when the entry point runs as a console script)."""


def config_subdir(output_dir: str) -> str:
    """Where Hydra writes this start's config in its run folder (``hydra.output_subdir``): ``.hydra`` the first time;
    for a later start in the same folder (``ckpt_path=last hydra.run.dir=<run>``, accepted or refused)
    ``.hydra/attempt-N`` (N = 2, 3, ...), so that the run's original record is never overwritten."""
    record = Path(output_dir) / ".hydra"
    if not (record / "overrides.yaml").exists():
        return ".hydra"
    n = 2
    while (record / f"attempt-{n}").exists():
        n += 1
    return f".hydra/attempt-{n}"


def launch_dir() -> str:
    """The folder the command was started in (``paths.root_dir``): Hydra's ``hydra.runtime.cwd`` inside a job, and
    the current folder in a multirun's driver, where Hydra resolves ``hydra.sweep.dir`` before any job has set the
    ``HydraConfig`` that ``${hydra:runtime.cwd}`` reads (it failed there with "HydraConfig was not set"). A job on a
    Ray worker, whose own current folder may be another, still gets the driver's folder: Hydra recorded it in the
    job's config when it composed it."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return str(HydraConfig.get().runtime.cwd)
    return os.getcwd()


# hydra/launcher=ray: each trial's log lines shown as they are, not merged across trials. Ray reads RAY_DEDUP_LOGS
# once, when imported, and Hydra imports it while scanning its plugins, before any launcher is set up: hence here.
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

# conf/hydra/launcher/ray.yaml is meant to be checked against the Ray plugin's schema of the same name
# (its keys are the plugin's); Hydra warns twice on every start that this matching by name is deprecated.
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/ray' is validated against ConfigStore schema", category=UserWarning)

if not OmegaConf.has_resolver("s2s_config_subdir"):  # used by conf/hydra/default.yaml
    OmegaConf.register_new_resolver("s2s_config_subdir", config_subdir)
if not OmegaConf.has_resolver("s2s_launch_dir"):  # used by conf/paths/default.yaml
    OmegaConf.register_new_resolver("s2s_launch_dir", launch_dir)


class RunInterrupted(Exception):
    """Training stopped on SIGINT or SIGTERM after saving a checkpoint to resume from.

    Attributes:
        signum: the signal; the entry point exits with status ``128 + signum`` (130 for SIGINT, 143 for SIGTERM), as
            a shell reports a process ended by that signal, so that schedulers see the run as not finished.
    """

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)
_task_started = False


def run_entry_point(task: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Run ``task(cfg)``; on a user error (see the module's docstring), log and print its message (no traceback) and
    exit 2 (in a job of a multirun: raise it, after the message, see :func:`in_multirun_job`); on
    :class:`RunInterrupted`, print its message and exit ``128 + signum``; on a SIGINT that nothing else
    handled (``KeyboardInterrupt``), print one line and exit 130; when the reader of a piped stdout has gone
    (``BrokenPipeError``, e.g. ``s2s-translate ... | head -1``), exit 141 without a word, as shell tools do.

    Hydra wraps an error raised while instantiating a config in an ``InstantiationException``; the user error is
    found in its chain of causes.
    """
    global _task_started
    _task_started = True
    try:
        return task(cfg)
    except RunInterrupted as exc:
        log.warning("%s", exc)
        print(f"interrupted: {exc}", file=sys.stderr)
        sys.exit(128 + exc.signum)  # in a multirun too: Ctrl+C stops the sweep (a Ray trial records it as stopped)
    except KeyboardInterrupt:  # SIGINT where no handler of ours saves anything (prepare, translate, evaluate, ...)
        message = "SIGINT (Ctrl+C) received: stopped; every file is written whole or not at all, so none was left half-written"
        log.warning("%s", message)
        print(f"interrupted: {message}", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
    except BrokenPipeError as exc:
        if exc.filename is not None or not _stdout_is_a_pipe():
            raise
        _quiet_closed_stdout()
        sys.exit(128 + signal.SIGPIPE)
    except Exception as exc:
        err = user_error(exc)
        if err is None:
            raise
        log.error("%s", err)
        print(f"error: {err}", file=sys.stderr)
        if in_multirun_job():
            raise err from exc
        sys.exit(2)


def _stdout_is_a_pipe() -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(sys.stdout.fileno()).st_mode)
    except (OSError, ValueError):
        return False


def _quiet_closed_stdout() -> None:
    """The reader of stdout has gone (``| head -1``): what follows is quiet, as for a shell tool killed by SIGPIPE
    (exit 141). stdout is pointed at /dev/null so that Python's flush at exit does not report the same broken pipe
    again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def in_multirun_job() -> bool:
    """Whether this is a job of a Hydra multirun (``-m``). Its user errors are raised rather than ending the process,
    so that the launcher records them against that trial and the sweep goes on (a ``SystemExit`` would end a basic
    launcher's whole sweep, and kill a Ray worker, which Ray then reports as a crash)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def user_error(exc: BaseException) -> Seq2SeqError | None:
    """The user error that ``exc`` is or was caused by, as a :class:`~seq2seq_lit.errors.Seq2SeqError` with a fix;
    None for anything else (a bug)."""
    err: BaseException | None = exc
    while err is not None:
        if isinstance(err, Seq2SeqError):
            return err
        if isinstance(err, MisconfigurationException):
            reason = " ".join(str(err).split()).rstrip(".")
            return ConfigError(
                f"the trainer refused the configuration: {reason}. Fix: change the trainer.* or callbacks.* option it names"
            )
        if isinstance(err, OSError) and err.errno in _DISK_FULL + _NOT_WRITABLE:
            where = err.filename or "a file of this run"
            fix = (
                f"free space on that disk (df -h {Path(where).parent}) or write to another one (paths.output_dir=DIR, "
                f"output=FILE)"
                if err.errno in _DISK_FULL
                else "make that folder writable, or write to another one (paths.output_dir=DIR, output=FILE)"
            )
            return ConfigError(f"{where}: {err.strerror} ({errno.errorcode[err.errno]}); the file was not written. Fix: {fix}")
        err = err.__cause__
    return None


def register_launchers() -> None:
    """Register the project's Hydra launcher (``hydra/launcher=ray``: ``hydra_plugins.seq2seq_lit_sweep``) through
    Hydra's public ``Plugins.register``.

    Hydra finds plugins by listing the ``hydra_plugins`` namespace package with ``pkgutil``: that works for a wheel
    install, but an editable install (``pip install -e .``, what ``make install`` does) maps the package with an import
    hook that ``pkgutil`` cannot list, and Hydra would then refuse ``hydra/launcher=ray`` as an unknown plugin. The
    launcher module is light (Ray is imported only when a sweep starts).
    """
    from hydra.core.plugins import Plugins

    try:
        from hydra_plugins.seq2seq_lit_sweep.ray_trials import RayTrialLauncher
    except ImportError:  # a partial install without the plugin package: nothing to register
        return
    Plugins.instance().register(RayTrialLauncher)


def exit_2_on_config_errors(hydra_main: Callable[[], Any]) -> Callable[[], Any]:
    """Wrap a ``@hydra.main`` function so that an error Hydra reports before the task starts (an unknown option, a
    value of the wrong type, a missing config group) exits 2, as the task's own user errors do, instead of Hydra's 1.

    Hydra prints such errors in one or two lines and exits 1 for any error, a bug in the task included; the errors of
    a task that started keep their status.
    """

    @functools.wraps(hydra_main)
    def main(*args: Any, **kwargs: Any) -> Any:
        global _task_started
        _task_started = False
        register_launchers()
        try:
            return hydra_main(*args, **kwargs)
        except SystemExit as exc:
            from ..sweep.trials import TrialsFailed  # a sweep that ran and lost trials: its own status 1

            if exc.code == 1 and not _task_started and not isinstance(exc, TrialsFailed):
                sys.exit(2)
            raise

    return main
