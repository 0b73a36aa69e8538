"""Loading trained checkpoints for inference, and averaging several checkpoints of one run.

A seq2seq-lit checkpoint carries the weights, the model's hyperparameters (plain containers) and the sentencepiece
models, so it is all that translation and evaluation need. Loading is weights-only (``torch.load(weights_only=True)``):
no pickled code runs, and a file that holds any is refused with a DataError naming it.

Checkpoint averaging takes the element-wise mean of the parameters of the last few checkpoints of a run, a cheap
ensemble that usually scores a little better than the last checkpoint alone (Vaswani et al. 2017, §6.1, average the
last 5 or 20 checkpoints; as OpenNMT-py's ``average_models`` and fairseq's ``average_checkpoints``).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import DataError, Seq2SeqError
from ..lit_module import TOKENIZERS_KEY, Seq2SeqLitModule
from ..utils.checkpoint_io import torch_load_weights_only

log = logging.getLogger(__name__)

AVERAGED_KEY = "seq2seq_lit_averaged"
"""Checkpoint key of an averaged checkpoint: ``{"paths": [...], "global_steps": [...]}`` of its inputs, oldest first."""

# What an averaged (inference) checkpoint keeps of its newest input, besides the averaged state_dict.
_KEPT_KEYS = ("epoch", "global_step", "pytorch-lightning_version", "hparams_name", "hyper_parameters", TOKENIZERS_KEY)


def resolve_device(name: str) -> str:
    """"auto" -> "cuda" when a GPU is visible, else "cpu"; any other name (cpu, cuda, cuda:N) unchanged."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def load_checkpoint(ckpt_path: str | Path, device: str = "cpu") -> Seq2SeqLitModule:
    """Load a trained module with its tokenizers, weights-only, in eval mode.

    The module is built from the checkpoint's hyperparameters and must take its weights exactly, and the
    sentencepiece models must have as many pieces as the embeddings have rows.

    Raises:
        DataError: the file is missing, not a seq2seq-lit checkpoint, or holds pickled code (:func:`read_checkpoint`);
            its hyperparameters do not build a model, its weights do not fit that model, or its sentencepiece models
            do not fit the embeddings. The message names the file.
    """
    path = Path(ckpt_path)
    checkpoint = read_checkpoint(path)
    hparams = checkpoint["hyper_parameters"]
    accepted = inspect.signature(Seq2SeqLitModule.__init__).parameters
    try:
        module = Seq2SeqLitModule(**{k: v for k, v in hparams.items() if k in accepted})
    except (TypeError, Seq2SeqError) as e:
        raise DataError(
            f"{path}: its hyper_parameters do not build a model ({e}). Fix: pass a checkpoint written by this version "
            f"of seq2seq-lit training"
        ) from None
    if mismatch := state_dict_mismatch(module.state_dict(), checkpoint["state_dict"]):
        raise DataError(
            f"{path}: its weights do not fit the model its hyper_parameters describe ({mismatch}); the file was edited "
            f"or assembled from different runs. Fix: pass a checkpoint as training wrote it"
        )
    module.on_load_checkpoint(checkpoint)  # the sentencepiece models (DataError if they are not valid models)
    for side in ("src", "tgt"):
        pieces, rows = getattr(module.tokenizers, side).vocab_size, hparams[f"{side}_vocab_size"]
        if pieces != rows:
            raise DataError(
                f"{path}: its {side} sentencepiece model has {pieces} pieces but the model's {side} embeddings have "
                f"{rows} rows: the tokenizers do not belong to these weights. Fix: pass a checkpoint as training "
                f"wrote it (it carries the tokenizers it was trained with)"
            )
    module.load_state_dict(checkpoint["state_dict"])
    return module.to(device).eval()


def state_dict_mismatch(expected: Mapping[str, torch.Tensor], state_dict: Mapping[str, Any]) -> str | None:
    """How ``state_dict`` differs from ``expected`` in parameter names and shapes (a few of each kind), or None."""
    problems = []
    if missing := sorted(expected.keys() - state_dict.keys()):
        problems.append(f"missing {', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}")
    if unexpected := sorted(state_dict.keys() - expected.keys()):
        problems.append(f"unexpected {', '.join(unexpected[:3])}{', ...' if len(unexpected) > 3 else ''}")
    shapes = [
        f"{name} is {tuple(state_dict[name].shape)}, expected {tuple(tensor.shape)}"
        for name, tensor in expected.items()
        if name in state_dict and tuple(getattr(state_dict[name], "shape", ())) != tuple(tensor.shape)
    ]
    if shapes:
        problems.append("; ".join(shapes[:3]) + ("; ..." if len(shapes) > 3 else ""))
    return "; ".join(problems) or None


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict of a seq2seq-lit checkpoint, on CPU, weights-only and memory-mapped (tensors are read
    from disk when used, so reading only ``global_step`` is cheap).

    Raises:
        DataError: the file is missing, not a loadable checkpoint, holds pickled objects other than weights and plain
            data (it could run code: refused without running it), or lacks ``state_dict``, ``hyper_parameters`` or
            the sentencepiece models.
    """
    path = Path(path)
    checkpoint = torch_load_weights_only(path, map_location="cpu", mmap=True)
    if not isinstance(checkpoint, dict):
        raise DataError(
            f"{path}: cannot load the checkpoint (it holds a {type(checkpoint).__name__}, not a dict). Fix: pass a "
            f".ckpt written by seq2seq-lit training"
        )
    missing = [key for key in ("state_dict", "hyper_parameters", TOKENIZERS_KEY) if key not in checkpoint]
    if missing:
        raise DataError(
            f"{path}: not a seq2seq-lit checkpoint (it has no {', '.join(missing)}). Fix: pass a .ckpt written by "
            f"seq2seq-lit training"
        )
    return checkpoint


def average_checkpoints(paths: Sequence[str | Path]) -> dict[str, Any]:
    """The element-wise mean of the weights of several checkpoints of one model, as an inference checkpoint.

    Floating-point tensors of ``state_dict`` are averaged (summed in float64, then cast back to their dtype); other
    tensors (integer or boolean buffers) are taken from the newest checkpoint, the one with the highest
    ``global_step`` (of equal steps, the later in ``paths``), as are the hyperparameters, ``epoch``, ``global_step`` and
    the sentencepiece models. Optimizer and LR-scheduler states, callback and loop states are dropped, so the result
    translates and evaluates (:func:`load_checkpoint`) but cannot resume training. ``result[AVERAGED_KEY]`` records the
    inputs: ``{"paths": [...], "global_steps": [...]}`` in the order given.

    The checkpoints are read one at a time (memory-mapped), so memory holds about one model plus a float64 sum.

    Raises:
        DataError: ``paths`` is empty; a file is missing or not a seq2seq-lit checkpoint; the checkpoints differ in
            parameter names or shapes (different architectures) or in sentencepiece models (different data or
            tokenizer settings). The message names the files.
    """
    if not paths:
        raise DataError("no checkpoint to average. Fix: pass inputs=[A.ckpt,B.ckpt,...] or ckpt_dir=DIR last=N")
    paths = [Path(p) for p in paths]
    sums: dict[str, torch.Tensor] = {}
    shapes: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
    tokenizers: Any = None
    steps: list[int] = []
    newest: dict[str, Any] = {}
    newest_step = -1
    for i, path in enumerate(paths):
        checkpoint = read_checkpoint(path)
        state_dict = checkpoint["state_dict"]
        if i == 0:
            shapes = {name: (tuple(t.shape), t.dtype) for name, t in state_dict.items()}
            tokenizers = checkpoint[TOKENIZERS_KEY]
        else:
            _check_same_model(paths[0], shapes, tokenizers, path, checkpoint)
        for name, tensor in state_dict.items():
            if tensor.is_floating_point():
                if name in sums:
                    sums[name].add_(tensor)
                else:
                    sums[name] = tensor.to(torch.float64, copy=True)
        step = int(checkpoint.get("global_step", -1))
        steps.append(step)
        if step >= newest_step:
            newest, newest_step = checkpoint, step
    averaged = {
        name: (sums[name] / len(paths)).to(tensor.dtype) if name in sums else tensor.clone()
        for name, tensor in newest["state_dict"].items()
    }
    result = {key: newest[key] for key in _KEPT_KEYS if key in newest}
    result["state_dict"] = averaged
    result[AVERAGED_KEY] = {"paths": [str(p.resolve()) for p in paths], "global_steps": steps}
    log.info("averaged %d checkpoint(s) (global steps %s)", len(paths), ", ".join(map(str, steps)))
    return result


def last_checkpoints(ckpt_dir: str | Path, n: int, exclude: Sequence[str | Path] = ()) -> list[Path]:
    """The ``n`` checkpoints of ``ckpt_dir`` (``*.ckpt``, not recursive) with the highest ``global_step`` stored inside
    them, oldest first.

    File names do not matter. Of several files with the same ``global_step`` (``last.ckpt`` is usually a copy of the
    newest step checkpoint) only one counts, a file not named ``last*`` if there is one. Averaged checkpoints and the
    paths in ``exclude`` (e.g. the output file) are skipped.

    Raises:
        DataError: ``ckpt_dir`` is not a folder, a file in it is not a seq2seq-lit checkpoint, or it holds fewer than
            ``n`` distinct steps (the message lists them and gives the fix).
    """
    folder = Path(ckpt_dir)
    if not folder.is_dir():
        raise DataError(f"{folder}: checkpoint folder not found. Fix: pass ckpt_dir=<run dir>/checkpoints")
    skip = {Path(p).resolve() for p in exclude}
    by_step: dict[int, Path] = {}
    # Sorted so that, among files of one step, a name other than last*.ckpt wins, then the first name.
    for path in sorted(folder.glob("*.ckpt"), key=lambda p: (p.name.startswith("last"), p.name)):
        if path.resolve() in skip:
            continue
        checkpoint = read_checkpoint(path)
        if AVERAGED_KEY in checkpoint:
            log.info("skipping %s: an averaged checkpoint", path)
            continue
        step = int(checkpoint.get("global_step", -1))
        if step in by_step:
            log.info("skipping %s: same global_step %d as %s", path, step, by_step[step])
        else:
            by_step[step] = path
    if len(by_step) < n:
        found = ", ".join(f"{p.name} (step {s})" for s, p in sorted(by_step.items())) or "none"
        raise DataError(
            f"{folder} holds {len(by_step)} checkpoint(s) of distinct global steps, fewer than last={n}: {found}. "
            f"Fix: pass last={max(len(by_step), 1)} or fewer, or keep more checkpoints while training "
            f"(callbacks.model_checkpoint.save_top_k=-1, with +trainer.val_check_interval=STEPS for more than one per "
            f"epoch)"
        )
    return [by_step[step] for step in sorted(by_step)[-n:]]


def _check_same_model(
    first: Path,
    shapes: dict[str, tuple[tuple[int, ...], torch.dtype]],
    tokenizers: Any,
    path: Path,
    checkpoint: dict[str, Any],
) -> None:
    """Raise DataError unless ``checkpoint`` has the parameters (names, shapes, dtypes) and tokenizers of ``first``."""
    state_dict = checkpoint["state_dict"]
    fix = "Fix: average only checkpoints of one training run (or of runs with the same model and data settings)"
    if missing := sorted(shapes.keys() - state_dict.keys()):
        raise DataError(f"{path} lacks parameters of {first}: {', '.join(missing[:5])}. {fix}")
    if extra := sorted(state_dict.keys() - shapes.keys()):
        raise DataError(f"{path} has parameters that {first} lacks: {', '.join(extra[:5])}. {fix}")
    for name, tensor in state_dict.items():
        if (tuple(tensor.shape), tensor.dtype) != shapes[name]:
            shape, dtype = shapes[name]
            raise DataError(
                f"{name} is {tuple(tensor.shape)} {tensor.dtype} in {path} but {shape} {dtype} in {first}: a different "
                f"architecture. {fix}"
            )
    if checkpoint[TOKENIZERS_KEY] != tokenizers:
        raise DataError(f"{path} and {first} carry different sentencepiece models. {fix}")
