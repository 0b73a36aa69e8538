"""What translate and evaluate share before decoding: the model(s) of ``ckpt_path``, the search, the quantization."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf

from ..errors import ConfigError
from ..lit_module import Seq2SeqLitModule
from ..preflight import NUMBERS, check_numbers
from .checkpoints import load_checkpoint, resolve_device
from .ensemble import Ensemble
from .quantization import quantize_for_decoding


@dataclass
class Decoder:
    """A loaded model ready to decode.

    Attributes:
        module: one :class:`~seq2seq_lit.lit_module.Seq2SeqLitModule`, or an :class:`~seq2seq_lit.inference.ensemble.Ensemble`.
        paths: the checkpoint file(s).
        search: the search's config (the ``model/search`` override, else the first checkpoint's).
        quantize: the validated ``quantize`` setting.
        device: where it decodes.
    """

    module: Seq2SeqLitModule | Ensemble
    paths: list[str]
    search: dict[str, Any] | None
    quantize: str
    device: str


def checkpoint_paths(ckpt_path: str | list[str] | ListConfig) -> list[str]:
    """``ckpt_path`` as a list: one file, or the files of an ensemble (``ckpt_path=[a.ckpt,b.ckpt]``)."""
    if isinstance(ckpt_path, (list, tuple, ListConfig)):
        return [str(p) for p in ckpt_path]
    return [str(ckpt_path)]


def load_decoder(cfg: DictConfig) -> Decoder:
    """Load ``cfg.ckpt_path`` (one checkpoint or a list: an ensemble) onto ``cfg.device``, with the search of
    ``cfg.model.search`` if given and ``cfg.quantize``.

    Raises:
        DataError: as :func:`~seq2seq_lit.inference.checkpoints.load_checkpoint`, or checkpoints of an ensemble that do not share
            their vocabularies (:class:`~seq2seq_lit.inference.ensemble.Ensemble`).
        ConfigError: a search setting or ``quantize`` is not valid.
    """
    check_numbers(cfg, [n for n in NUMBERS if n.key.startswith("model.search.")])
    device = resolve_device(cfg.device)
    paths = checkpoint_paths(cfg.ckpt_path)
    if not paths:
        raise ConfigError("ckpt_path=[]: no checkpoint. Fix: pass ckpt_path=FILE, or ckpt_path=[A.ckpt,B.ckpt] for an ensemble")
    modules = [load_checkpoint(path, device) for path in paths]
    module = modules[0] if len(modules) == 1 else Ensemble(modules, paths)
    search = modules[0].hparams.get("search")
    if cfg.get("model", {}).get("search"):
        module.search = hydra.utils.instantiate(cfg.model.search)
        search = OmegaConf.to_container(cfg.model.search, resolve=True)
    quantize = quantize_for_decoding(module, cfg.get("quantize"))
    return Decoder(module, [str(Path(p).resolve()) for p in paths], search, quantize, device)
