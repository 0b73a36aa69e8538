"""Helpers of the device tests: a tiny LightningModule from the Hydra configs, a ragged batch, and a check that
seq2seq-lit's code names the device of every tensor it makes."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
import torch
from torch.overrides import TorchFunctionMode

from seq2seq_lit.data.batching import collate

from .conftest import TINY, compose_train

PACKAGE_DIR = str(Path(__file__).resolve().parents[1] / "seq2seq_lit")
TORCH_DIR = str(Path(torch.__file__).resolve().parent)
# Factories that put a tensor on the default device unless told otherwise (new_* and *_like follow their input).
FACTORIES = {
    torch.arange, torch.zeros, torch.ones, torch.full, torch.empty, torch.tensor, torch.as_tensor, torch.rand,
    torch.randn, torch.randint, torch.randperm, torch.eye, torch.linspace,
}


class FactoriesWithoutDevice(TorchFunctionMode):
    """Records ``file:line torch.name`` of every tensor factory called from seq2seq-lit's code without a ``device``:
    such a tensor lands on the CPU, which a CPU run cannot tell from the inputs' device, and a GPU run fails or copies."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in FACTORIES and kwargs.get("device") is None:
            frame = sys._getframe(1)
            while frame is not None and frame.f_code.co_filename.startswith(TORCH_DIR):
                frame = frame.f_back
            if frame is not None and frame.f_code.co_filename.startswith(PACKAGE_DIR):
                where = Path(frame.f_code.co_filename).relative_to(Path(PACKAGE_DIR).parent)
                self.calls.append(f"{where}:{frame.f_lineno} torch.{func.__name__}")
        return func(*args, **kwargs)


def tiny_module(tmp_path: Path, *overrides: str, vocab: int = 41):
    """A small Seq2SeqLitModule of the ``model`` configs and ``overrides``, with dropout, for vocabularies of ``vocab``."""
    cfg = compose_train([*TINY, "model.dropout=0.2", *overrides], tmp_path / "run")
    torch.manual_seed(0)
    return hydra.utils.instantiate(cfg.model, src_vocab_size=vocab, tgt_vocab_size=vocab, pad_id=0, bos_id=2, eos_id=3,
                                   _recursive_=False)


def ragged_batch(vocab: int = 41):
    """5 pairs, sources of 3-11 pieces and targets of 5-9: padding on both sides."""
    examples = [
        (i, [5 + (j * 7 + i) % (vocab - 5) for j in range(3 + 2 * i)], [6 + (j + i) % (vocab - 6) for j in range(9 - i)])
        for i in range(5)
    ]
    return collate(examples)
