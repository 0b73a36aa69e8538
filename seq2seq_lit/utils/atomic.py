"""The one rule for every file seq2seq-lit writes: the complete new file or the old one, never a part of either.

Checkpoints, averaged checkpoints, translations, alignments, hypotheses, metrics, tokenizer and download caches are
all written through :func:`atomic_open`: into a temporary file in the target's own folder (``os.replace`` is atomic
only within one file system), flushed and synced to disk, then renamed over the target, and the folder synced so
that the rename survives a power cut. A failed write (full disk, a crash, Ctrl+C) removes its temporary file and leaves
the old file as it was; only a SIGKILL or a power cut can leave one behind, which
:func:`remove_orphaned_temporaries` removes the next time a run starts.

What may be written at all is checked before any work starts, by :mod:`seq2seq_lit.utils.output_guard`.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .full_disk import as_full_disk_error

log = logging.getLogger(__name__)

_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")
"""Names of :func:`atomic_open`'s temporary files: ``.<target name>.<pid>.<8 hex digits>.tmp``."""


def temporary_path(path: Path) -> Path:
    """A fresh temporary file name beside ``path`` (same folder, hence same file system), marked with this process."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", *, make_parents: bool = False, **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file for writing that replaces ``path`` when the ``with`` block ends without an error.

    Args:
        path: the file to write.
        mode: ``"wb"`` or ``"w"`` (text; ``encoding`` and ``newline`` go through ``kwargs`` to :func:`open`).
        make_parents: create missing parent folders (caches, checkpoint folders); otherwise a missing folder is an
            error, as for a user's output path (see :func:`~seq2seq_lit.utils.output_guard.check_output_path`).

    Raises:
        OSError: the folder is missing or not writable, or the disk is full (its ``filename`` is ``path``; a full
            disk is ENOSPC even where the writer reported it otherwise, see
            :func:`~seq2seq_lit.utils.full_disk.as_full_disk_error`); the old file, if any, is unchanged and no
            temporary file is left.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode={mode!r}: atomic_open writes a whole file, mode 'w' or 'wb'")
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        with open(tmp, mode.replace("w", "x"), **kwargs) as f:  # the usual permissions (umask), unlike mkstemp's 0600
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        full = as_full_disk_error(e, path)  # before the temporary file is removed: the disk as the write found it
        tmp.unlink(missing_ok=True)
        if full is not None:  # also torch.save's RuntimeError and numpy's errno-less OSError on a full disk
            raise full from e
        if isinstance(e, OSError) and e.filename in (None, str(tmp)):  # write() names no file: name the target
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, make_parents: bool = False) -> Path:
    """Write ``data`` to ``path`` through :func:`atomic_open`; returns ``path`` as a :class:`~pathlib.Path`."""
    with atomic_open(path, "wb", make_parents=make_parents) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, make_parents: bool = False) -> Path:
    """Write ``text`` as UTF-8 with ``\\n`` line ends to ``path`` through :func:`atomic_open`; returns ``path``."""
    with atomic_open(path, "w", make_parents=make_parents, encoding="utf-8", newline="\n") as f:
        f.write(text)
    return Path(path)


def _sync_folder(folder: Path) -> None:
    """fsync a folder, so that a rename in it is on disk; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def remove_orphaned_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files that :func:`atomic_open` left in ``folder`` (not recursive) when its process was
    killed (SIGKILL, power cut); files of a process still running are kept. Logs one line per file; returns them."""
    folder = Path(folder)
    removed = []
    for tmp in sorted(folder.glob(".*.tmp")) if folder.is_dir() else []:
        match = _TEMPORARY.match(tmp.name)
        if match is None or _process_alive(int(match["pid"])):
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
        log.info("removed %s, left by an interrupted write of %s", tmp, folder / match["name"])
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
