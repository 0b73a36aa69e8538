"""Build a corpus' tokenizer and corpus store ahead of training: ``python -m seq2seq_lit.prepare <data overrides>``
(console script ``s2s-prepare``).

Takes the same overrides as ``python -m seq2seq_lit.train`` (the config is ``conf/prepare.yaml``, which
extends ``train.yaml``), so a sweep or a cluster job given the same data settings opens the store this built instead of
building its own. An existing store is checked in full (every file's sha256) and rebuilt if damaged. Prints a summary:
pairs kept and dropped, pieces, vocabulary sizes, size on disk and where the store is.
"""

from __future__ import annotations

import time

import hydra
from omegaconf import DictConfig

from .utils.entry import CONFIG_PATH, run_entry_point


def prepare(cfg: DictConfig) -> str:
    """Build (or check) the store of ``cfg.data``; returns its folder."""
    from .data.store import describe, open_store  # after Hydra has set up logging

    start = time.perf_counter()
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.corpus.prepare()
    store = open_store(
        datamodule.corpus,
        datamodule.tokenizer_settings,
        datamodule.max_length,
        datamodule.store_dir,
        verify=True,
        progress=cfg.get("progress"),
        hash_files=datamodule.store_hash_files,
    )
    for line in [*describe(store), f"ready in {time.perf_counter() - start:.1f} s"]:
        print(line)
    return str(store.path)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="prepare.yaml")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    run_entry_point(prepare, cfg)


if __name__ == "__main__":
    main()
