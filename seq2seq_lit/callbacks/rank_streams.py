"""Per-rank random streams: each data-parallel process draws its own dropout masks and scheduled-sampling coins."""

from __future__ import annotations

import logging
import random

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

log = logging.getLogger(__name__)


def rank_seed(seed: int, rank: int) -> int:
    """The 32-bit seed of process ``rank``'s random stream: NumPy's ``SeedSequence`` over the entropy
    ``(seed, rank)``, so that streams of different ranks (and of nearby seeds) do not overlap in practice."""
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def seed_rank_stream(seed: int, rank: int) -> int:
    """Seed the global generators of this process (torch CPU and every CUDA device, Python's ``random``, NumPy)
    with :func:`rank_seed`; returns that seed."""
    derived = rank_seed(seed, rank)
    torch.manual_seed(derived)  # also seeds the CUDA generators
    random.seed(derived)
    np.random.seed(derived)
    return derived


class RankRandomStreams(Callback):
    """When fitting starts, give each process of rank r >= 1 its own stream, seeded from ``(seed, rank)``
    (:func:`seed_rank_stream`); rank 0 keeps the stream ``seed_everything(seed)`` started.

    Every process of a data-parallel run starts from the same ``seed`` (``seed_everything`` in ``train``), which builds
    identical initial weights; left there, whenever two ranks' batches had the same shape they would draw the same
    dropout masks and teacher-forcing coins on different data. After this callback each rank has its own stream. Rank 0
    is left as it was so that a single-process run draws exactly the numbers it drew before per-rank streams existed
    (its published results reproduce to the last digit).

    The data order is unaffected: the batch order comes from generators seeded with ``data.seed``
    (:class:`~seq2seq_lit.data.batching.BucketBatchSampler`), so every rank cuts the same global batches and keeps its
    share. A resumed run then replaces these streams by the states each rank saved
    (:class:`~seq2seq_lit.callbacks.ResumeCheckpoint`).

    Args:
        seed: the run's ``seed``; None leaves the generators alone (an unseeded run's processes differ already).
    """

    def __init__(self, seed: int | None) -> None:
        self.seed = seed

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # "fit" only: evaluation draws no random numbers, and a test after fitting must not reset the streams.
        if stage == "fit" and self.seed is not None and trainer.global_rank > 0:
            derived = seed_rank_stream(self.seed, trainer.global_rank)
            log.debug("rank %d: random stream seeded with %d", trainer.global_rank, derived)
