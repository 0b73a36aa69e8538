"""How the trainer writes and reads checkpoints: atomically, weights-only, and never with broken weights.

Lightning's default ``TorchCheckpointIO`` writes through an fsspec transaction whose temporary file lies in the system
temp folder, often another file system than the checkpoints, so the final move is a copy that a crash can leave
half-done. :class:`AtomicCheckpointIO` writes the temporary file next to the checkpoint, syncs it to disk and renames
it over the old file (``os.replace``, atomic within a file system): a reader, or a run killed at any moment, sees the
old checkpoint or the complete new one.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Any, Callable

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.types import _PATH

from ..errors import DataError
from .atomic import atomic_open
from .nonfinite import NonFiniteError

log = logging.getLogger(__name__)


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save(obj)`` to ``path`` by the project's rule for writes (:func:`~seq2seq_lit.utils.atomic.atomic_open`:
    temporary file beside it, fsync, rename). Creates missing parent folders; a failed save leaves neither a
    temporary nor a truncated file behind."""
    with atomic_open(path, "wb", make_parents=True) as f:
        torch.save(obj, f)
    return Path(path)


def torch_load_weights_only(path: str | os.PathLike[str], map_location: Any = "cpu", mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)``: only tensors and plain containers are unpickled, no code runs.

    Raises:
        DataError: the file is missing, truncated, not a torch file, or holds anything but weights and plain data
            (e.g. pickled code); the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found. Fix: pass the path of a .ckpt written by seq2seq-lit training")
    _check_torch_file(path)
    try:
        try:
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
        except RuntimeError as e:
            if not mmap or "mmap" not in str(e):
                raise
            return torch.load(path, map_location=map_location, weights_only=True)  # legacy (non-zip) format
    except pickle.UnpicklingError as e:
        # torch's message suggests weights_only=False; what matters here is the object it refused.
        refused = next((line.strip() for line in str(e).splitlines() if "GLOBAL" in line), "an object other than weights")
        raise DataError(
            f"{path}: refused to load the checkpoint: it holds more than weights and plain data, which could run "
            f"code on loading ({refused}). Fix: load only checkpoints written by seq2seq-lit training; this one is "
            f"not such a checkpoint, or was altered"
        ) from None
    except (OSError, RuntimeError, EOFError, ValueError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DataError(f"{path}: cannot load the checkpoint ({reason}). Fix: pass a complete .ckpt written by seq2seq-lit training") from None


_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")  # torch.save's zip format; its legacy format (a pickle, protocol >= 2)


def _check_torch_file(path: Path) -> None:
    """Raise DataError, before unpickling anything, if ``path`` is empty or is not in a format torch.save writes."""
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise DataError(
            f"{path}: an empty file (0 bytes), not a checkpoint; a copy or a write was interrupted. Fix: pass a "
            f"complete .ckpt written by seq2seq-lit training (checkpoints/last.ckpt or a step*.ckpt of the run)"
        )
    if not head.startswith(_TORCH_MAGIC):
        raise DataError(
            f"{path}: not a PyTorch checkpoint (it starts with the bytes {head.hex(' ')}, e.g. a text file). Fix: pass "
            f"a .ckpt written by seq2seq-lit training"
        )


def is_training_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a checkpoint that training can resume from (it holds an optimizer state); False for any
    other file, a checkpoint that cannot be read included."""
    try:
        checkpoint = torch_load_weights_only(path, mmap=True)
    except DataError:
        return False
    return isinstance(checkpoint, dict) and "optimizer_states" in checkpoint


def nonfinite_weights(checkpoint: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors of ``checkpoint["state_dict"]`` that hold NaN or infinity."""
    state_dict = checkpoint.get("state_dict") or {}
    return [
        name
        for name, t in state_dict.items()
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())
    ]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written atomically (:func:`atomic_torch_save`) and read weights-only
    (:func:`torch_load_weights_only`), for local paths.

    A checkpoint whose weights hold NaN or infinity is not written: the run stops with :class:`NonFiniteError`
    naming the step, and the checkpoint already on disk stays intact.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        if broken := nonfinite_weights(checkpoint):
            raise NonFiniteError(
                f"step {checkpoint.get('global_step')}: the weights hold NaN or infinity ({', '.join(broken[:3])}"
                f"{', ...' if len(broken) > 3 else ''}), so {path} was not written; the checkpoints already saved are "
                f"intact. Fix: lower model.optimizer.lr or trainer.gradient_clip_val and resume from the last "
                f"checkpoint (ckpt_path=last)"
            )
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(
        self, path: _PATH, map_location: Callable | Any | None = lambda storage, loc: storage, weights_only: bool | None = None
    ) -> dict[str, Any]:
        if weights_only is False:
            log.warning("%s: loading weights-only anyway; seq2seq-lit checkpoints need nothing else", path)
        checkpoint = torch_load_weights_only(path, map_location=map_location)
        if not isinstance(checkpoint, dict):
            raise DataError(f"{path}: not a checkpoint (it holds a {type(checkpoint).__name__}, not a dict)")
        return checkpoint
