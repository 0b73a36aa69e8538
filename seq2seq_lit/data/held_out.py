"""The held-out splits (val, test) of a ``data`` config as files, found without building the data module: what
``s2s-eval`` scores and ``s2s-gradients`` measures."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError

EVAL_SPLITS = ("val", "test")


def split_files(data_cfg: DictConfig, split: str, key: str = "data.split") -> tuple[Path, Path]:
    """(source file, reference file) of ``split`` under a ``data`` config, without building the data module (so no
    tokenizer is trained).

    A config with a ``corpus`` node (``data=multi30k``) instantiates the corpus and asks it (downloading the corpus
    first if it is neither local nor cached); a flat one (``data=parallel_text``) gives ``data.<split>_src`` and
    ``data.<split>_tgt``; the train and val files of a flat config may stay unset. ``key`` names the option that chose
    the split, for the error.

    Raises:
        ConfigError: the split is not val or test, or its files are not set.
        DataError: a download failed (see :meth:`~seq2seq_lit.data.multi30k.Multi30k.prepare`).
    """
    if split not in EVAL_SPLITS:
        raise ConfigError(f"{key}={split!r}; fix: use one of {', '.join(EVAL_SPLITS)} (held-out pairs)")
    if "corpus" in data_cfg:
        corpus = hydra.utils.instantiate(data_cfg.corpus)
        corpus.prepare()
        return corpus.paths(split)
    keys = (f"{split}_src", f"{split}_tgt")
    unset = [k for k in keys if k not in data_cfg or OmegaConf.is_missing(data_cfg, k) or data_cfg[k] is None]
    if unset:
        raise ConfigError(
            f"{' and '.join('data.' + k for k in unset)} not set; fix: pass data.{keys[0]}=FILE data.{keys[1]}=FILE "
            f"(line-aligned source and reference files)"
        )
    return Path(data_cfg[keys[0]]).expanduser(), Path(data_cfg[keys[1]]).expanduser()
