"""What every entry point does around its task: user errors become one clear message and exit status 2."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig

from ..errors import Seq2SeqError

log = logging.getLogger(__name__)

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")
"""The package's ``seq2seq_lit/conf/`` folder (shipped in the wheel), as an absolute path for
``hydra.main(config_path=...)``: a relative ``"../conf"`` is resolved as the Python module ``conf`` when the entry point
runs as a console script (``s2s-eval``)."""


class RunInterrupted(Exception):
    """Training stopped on SIGINT or SIGTERM after saving a checkpoint to resume from.

    Attributes:
        signum: the signal; the entry point exits with status ``128 + signum`` (130 for SIGINT, 143 for SIGTERM), as
            a shell reports a process ended by that signal, so that schedulers see the run as not finished.
    """

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


def run_entry_point(task: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Run ``task(cfg)``; on a :class:`~seq2seq_lit.errors.Seq2SeqError`, print its message (no traceback) and exit 2;
    on :class:`RunInterrupted`, print its message and exit ``128 + signum``.

    Hydra wraps an error raised while instantiating a config in an ``InstantiationException``; the user error is
    found in its chain of causes.
    """
    try:
        return task(cfg)
    except RunInterrupted as exc:
        log.warning("%s", exc)
        print(f"interrupted: {exc}", file=sys.stderr)
        sys.exit(128 + exc.signum)
    except Exception as exc:
        err: BaseException | None = exc
        while err is not None and not isinstance(err, Seq2SeqError):
            err = err.__cause__
        if err is None:
            raise
        log.error("%s", err)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
