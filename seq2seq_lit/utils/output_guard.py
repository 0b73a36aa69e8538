"""The one check every tool makes on its output paths before any work: nothing a command did not set out to change is
replaced by its output (issues 18 and 26).

Every ``s2s-*`` tool calls :func:`check_output_path` for each output file and :func:`check_output_dir` for each output
folder (:data:`TOOL_OUTPUTS` lists them per tool; ``tests/test_faults.py`` walks every console script of
``pyproject.toml`` through that table, so a new tool cannot be left out). An output is refused, with a
:class:`~seq2seq_lit.errors.ConfigError` naming the key and the fix (one line, exit 2 at the entry point), when it

- is a folder, lies in a missing folder, or in one that is not writable;
- is one of the command's inputs (a source file, a gold file, a checkpoint it reads);
- is a checkpoint (any file ``torch.save`` wrote): a training checkpoint holds the optimizer state and step that
  ``ckpt_path=last`` resumes from, a ``step*.ckpt`` the weights that were tested;
- is a training run's record: its ``metrics.json`` (``best_model_path``, ``val/bleu_best``, ``train_seconds``), its
  ``train.log``, or a file of its ``.hydra/`` folder.

``overwrite=true`` (translate, average) lifts the refusal of an input or a checkpoint once asked for explicitly;
a tool whose product is a checkpoint (``s2s-average``) may replace an inference checkpoint it wrote before
(``replaces="inference checkpoint"``).
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path

from ..errors import ConfigError

TOOL_OUTPUTS: dict[str, tuple[str, ...]] = {
    "seq2seq_lit.train": ("hydra.run.dir",),
    "seq2seq_lit.translate": ("output", "alignment_output"),
    "seq2seq_lit.evaluate": ("output_dir",),
    "seq2seq_lit.average": ("output",),
    "seq2seq_lit.compare": ("--plot", "--plot-length"),
    "seq2seq_lit.align": ("output", "scores_output"),
    "seq2seq_lit.prepare": ("data.store_dir",),
    "seq2seq_lit.gradients": ("output_dir",),
}
"""The output options of each tool (by module), every one checked here before the tool starts its work."""

TRAINING_METRICS_KEY = "sacrebleu_signature"
"""A key that training always writes into a run's ``metrics.json`` and ``s2s-eval`` never does."""


def check_output_path(
    key: str,
    path: str | os.PathLike[str],
    *,
    inputs: Iterable[tuple[str, str | os.PathLike[str]]] = (),
    overwrite: bool | None = None,
    replaces: str | None = None,
) -> Path:
    """Check, before any work, that ``path`` can be written as the output ``key``; returns it as a Path.

    Args:
        key: the option that named the output (for the message), e.g. ``"output"`` or ``"--plot"``.
        path: the output file.
        inputs: ``(key, path)`` of the command's input files.
        overwrite: the user asked to replace an input or a checkpoint (``overwrite=true``); None for a tool without
            that option (the message then does not offer it).
        replaces: ``"inference checkpoint"`` where the tool's product is one (an older product may be replaced).

    Raises:
        ConfigError: ``path`` is a folder, its folder is missing or not writable, or ``path`` is an input, a checkpoint
            or a training run's record (see the module's docstring).
    """
    path = check_output_location(key, path)
    if not path.exists():
        return path
    can_overwrite = overwrite is not None  # the tool takes overwrite=true
    if not overwrite:
        for input_key, input_path in inputs:
            if input_path and Path(input_path).exists() and os.path.samefile(path, input_path):
                raise ConfigError(
                    f"{key}={path} is also the input {input_key}; writing it would destroy that input. Fix: pass "
                    f"another {key}" + (", or add overwrite=true to replace it once it has been read" if can_overwrite else "")
                )
    if record := run_record(path):
        raise ConfigError(
            f"{key}={path} is {record}; writing it would destroy it. Fix: pass another {key} (a new file outside the "
            f"run's checkpoints/ and .hydra/ folders)"
        )
    if not overwrite and (kind := checkpoint_kind(path)) and not (kind == replaces):
        raise ConfigError(
            f"{key}={path} is a {kind}; writing over it would lose it"
            + (" (its optimizer state and step: ckpt_path=last could no longer resume)" if kind == "training checkpoint" else "")
            + f". Fix: pass another {key}" + (", or add overwrite=true to replace it" if can_overwrite else "")
        )
    return path


def check_output_location(key: str, path: str | os.PathLike[str]) -> Path:
    """The first half of :func:`check_output_path`, for a tool that learns its inputs only later (``s2s-average
    ckpt_dir=``): ``path`` is not a folder, and its folder exists and is writable; returns it as a Path.

    Raises:
        ConfigError: naming ``key`` and the fix.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise ConfigError(f"{key}={path}: a folder, not a file. Fix: pass a file path, e.g. {key}={path / 'out'}")
    folder = path.parent
    if not folder.is_dir():
        raise ConfigError(
            f"{key}={path}: the folder {folder} does not exist. Fix: create it (mkdir -p {folder}) or pass another path"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={path}: the folder {folder} is not writable. Fix: pass a path in a folder you can write")
    return path


def checkpoint_inputs(ckpt_path: object, key: str = "ckpt_path") -> list[tuple[str, str]]:
    """``(key, path)`` of the checkpoints a command reads: ``ckpt_path=FILE`` or an ensemble ``ckpt_path=[A,B]``."""
    if not ckpt_path or isinstance(ckpt_path, str):
        return [(key, ckpt_path)] if ckpt_path else []
    return [(f"{key}[{i}]", str(p)) for i, p in enumerate(ckpt_path)]


def check_output_dir(
    key: str,
    folder: str | os.PathLike[str],
    files: Iterable[str],
    *,
    inputs: Iterable[tuple[str, str | os.PathLike[str]]] = (),
    fix: str = "",
) -> Path:
    """Check an output folder and the ``files`` (names relative to it) that the tool writes there, as
    :func:`check_output_path` does for one file; a missing folder is fine (the tool creates it).

    Raises:
        ConfigError: ``folder`` is an existing file, or one of ``files`` may not be written (see
            :func:`check_output_path`); ``fix`` replaces the message's fix.
    """
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{key}={folder}: a file, not a folder. Fix: pass {key}=<a folder>")
    inputs = list(inputs)
    for name in files:
        path = folder / name
        if path.parent.is_dir():
            try:
                check_output_path(key, path, inputs=inputs)
            except ConfigError as e:
                if not fix:
                    raise
                raise ConfigError(f"{str(e).split('. Fix: ')[0]}. Fix: {fix}") from None
    return folder


def check_run_dir(key: str, folder: str | os.PathLike[str], resume_from: str | os.PathLike[str] | None) -> Path:
    """Check a training run's output folder: a new folder, or the folder of the run that ``resume_from`` (the
    checkpoint this run resumes) belongs to. Training into another finished or started run's folder would replace its
    ``metrics.json`` and ``checkpoints/last.ckpt``.

    Raises:
        ConfigError: ``folder`` is a file, or holds another run's ``metrics.json`` or checkpoints.
    """
    folder = Path(folder).expanduser()
    fix = f"pass hydra.run.dir=<a new folder>, or resume that run with ckpt_path=last hydra.run.dir={folder}"
    if resume_from is not None and folder.resolve() in Path(resume_from).resolve().parents:
        return check_output_dir(key, folder, (), fix=fix)
    return check_output_dir(key, folder, ("metrics.json", "checkpoints/last.ckpt"), fix=fix)


def checkpoint_kind(path: str | os.PathLike[str]) -> str | None:
    """``"training checkpoint"`` (it holds an optimizer state), ``"inference checkpoint"`` (another file that
    ``torch.save`` wrote), or None for any other file. Reads only the zip directory, not the tensors."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if not any(n.endswith("/data.pkl") for n in names):
                return None
            pickle = archive.read(next(n for n in names if n.endswith("/data.pkl")))
    except (OSError, zipfile.BadZipFile, KeyError):
        with open(path, "rb") as f:  # torch's legacy format: a pickle; only an .ckpt name says it is a checkpoint
            legacy = f.read(1) == b"\x80" and Path(path).suffix in (".ckpt", ".pt", ".pth")
        return "inference checkpoint" if legacy else None
    return "training checkpoint" if b"optimizer_states" in pickle else "inference checkpoint"


def run_record(path: str | os.PathLike[str]) -> str | None:
    """What ``path`` is in a training run's folder, if it is part of the run's record: its ``metrics.json``, its
    ``train.log``, or a file of its ``.hydra/`` folder; None otherwise."""
    path = Path(path).resolve()
    if ".hydra" in path.parts[:-1]:
        return f"a file of a run's config record ({path.parent})"
    run = path.parent
    if path.name == "metrics.json":
        try:
            metrics = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            metrics = None
        if (isinstance(metrics, dict) and TRAINING_METRICS_KEY in metrics) or (run / "checkpoints").is_dir():
            return f"the training run {run}'s metrics.json (best_model_path, val/bleu_best, train_seconds)"
    if path.name == "train.log" and (run / ".hydra").is_dir():
        return f"the training run {run}'s log"
    return None
