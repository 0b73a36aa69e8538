"""Tell a full disk from a bug when a write fails without saying why.

A full disk (or quota) does not always surface as ``OSError(ENOSPC)``: numpy's ``ndarray.tofile`` and ``np.save``
report a short write as ``OSError: [Errno None]``, and ``torch.save`` as ``RuntimeError: [enforce fail at
inline_container.cc:...] . unexpected pos 64 vs 0`` (or ``PytorchStreamWriter failed writing file``), with no file
name. :func:`as_full_disk_error` turns such an error into the ``OSError(ENOSPC, ..., <file>)`` that
:func:`seq2seq_lit.utils.entry.user_error` reports as one line with the fix (exit 2), when the disk that was written
has (almost) no space left at the moment of the failure; anything else stays what it was.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)

NEARLY_FULL_BYTES = 1 << 20
"""A disk with less free space than this (1 MiB) after a failed write counts as full: the failed write stopped at
the last free block, so a few KiB may remain (file system reserves, another writer)."""

_SILENT_WRITE_FAILURE = re.compile(r"unexpected pos|inline_container|PytorchStreamWriter failed|failed writing|write", re.I)
"""torch.save's messages for a write that the stream refused (torch/csrc/.../inline_container.cc)."""


def free_bytes(folder: str | os.PathLike[str]) -> int | None:
    """Bytes an unprivileged user may still write on the disk holding ``folder`` (None where it cannot be read)."""
    try:
        stat = os.statvfs(folder)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def disk_is_full(folder: str | os.PathLike[str]) -> bool:
    """Whether the disk holding ``folder`` has less than :data:`NEARLY_FULL_BYTES` free."""
    free = free_bytes(folder)
    return free is not None and free < NEARLY_FULL_BYTES


def as_full_disk_error(exc: BaseException, path: str | os.PathLike[str]) -> OSError | None:
    """``OSError(ENOSPC or EDQUOT, strerror, path)`` if ``exc`` is a failed write of ``path`` on a full disk, else None.

    Call it before anything written is removed (a temporary file, a half-built folder), while the disk is still in
    the state that made the write fail.

    Args:
        exc: the error the write raised: an ``OSError`` (with its errno, or ``None`` for numpy's short writes) or a
            ``RuntimeError`` from ``torch.save``.
        path: the file (or folder) that was being written; the error names it.
    """
    path = Path(path)
    if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
        filename = exc.filename if exc.filename is not None else str(path)
        return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), filename)
    silent = (isinstance(exc, OSError) and exc.errno is None) or (
        isinstance(exc, RuntimeError) and _SILENT_WRITE_FAILURE.search(str(exc)) is not None
    )
    folder = next((p for p in (path, *path.parents) if p.is_dir()), None)
    if silent and folder is not None and disk_is_full(folder):
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return None
