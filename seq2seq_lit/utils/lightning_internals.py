"""The private Lightning and torchmetrics names this package uses, all here and nowhere else.

Lightning has no public way to ask whether a checkpoint saved after a training batch resumes exactly (no validation
and no epoch end due next), nor whether it will wrap the dataloaders in a ``DistributedSampler``; torchmetrics none to
restore a metric's update count; torch none to let ``torch.compile`` keep more graphs per function
(:func:`raise_recompile_limit`, a ``torch._dynamo`` setting). Each function below reads or writes one private name of the versions pinned in
``pyproject.toml`` (``lightning 2.6.x``, ``torchmetrics 1.9.x``). :data:`PRIVATE_NAMES` lists them, and
``tests/test_lightning_internals.py`` checks each on live objects, so an upgrade that moves one fails there, naming it.
"""

from __future__ import annotations

import subprocess
from typing import NamedTuple

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar
from torchmetrics import Metric


class PrivateName(NamedTuple):
    """A private attribute, ``<owner>.<name>``, where ``owner`` is a path from a ``trainer`` or a ``metric``."""

    owner: str
    name: str
    used_by: str


PRIVATE_NAMES = (
    PrivateName("trainer.fit_loop.epoch_loop", "_should_accumulate", "batch_ends_an_accumulation"),
    PrivateName("trainer.fit_loop.epoch_loop", "_num_ready_batches_reached", "epoch_batches_done"),
    PrivateName("trainer.fit_loop.epoch_loop", "_should_check_val_fx", "validation_due"),
    PrivateName("trainer.fit_loop", "_data_fetcher", "validation_due"),
    PrivateName("trainer", "_accelerator_connector", "replaces_samplers"),
    PrivateName("trainer._accelerator_connector", "use_distributed_sampler", "replaces_samplers"),
    PrivateName("ddp_trainer.strategy.launcher", "procs", "launched_processes"),
    PrivateName("metric", "_update_count", "metric_update_count, set_metric_update_count"),
    PrivateName("metric", "_computed", "set_metric_update_count"),
    PrivateName("progress_bar", "_get_train_description", "RunProgressBar"),
)


def batch_ends_an_accumulation(trainer: L.Trainer) -> bool:
    """Whether the training batch just run was followed by an optimizer step (no gradient accumulation pending)."""
    return not trainer.fit_loop.epoch_loop._should_accumulate()


def epoch_batches_done(trainer: L.Trainer) -> bool:
    """Whether the current epoch has run all its training batches (its end comes next)."""
    return trainer.fit_loop.epoch_loop._num_ready_batches_reached()


def validation_due(trainer: L.Trainer) -> bool:
    """Whether a validation runs after the current training batch."""
    return trainer.fit_loop.epoch_loop._should_check_val_fx(trainer.fit_loop._data_fetcher)


def replaces_samplers(trainer: L.Trainer) -> bool:
    """Whether Lightning wraps the dataloaders' samplers in a ``DistributedSampler`` (``use_distributed_sampler``)."""
    return trainer._accelerator_connector.use_distributed_sampler


def launched_processes(trainer: L.Trainer) -> list[subprocess.Popen]:
    """The processes of the other ranks that Lightning's ``ddp`` launcher started from this one (rank 0), as the very
    list that Lightning's child-process observer (``_ChildProcessObserver``, started with it) polls: removing a
    process from it takes that process out of the observer's watch. An empty list where there is no such launcher
    (one process, torchrun, SLURM)."""
    launcher = trainer.strategy.launcher
    procs = getattr(launcher, "procs", None) if launcher is not None else None
    return procs if isinstance(procs, list) else []


def metric_update_count(metric: Metric) -> int:
    """How many times ``metric.update`` ran since the last reset."""
    return metric._update_count


def set_metric_update_count(metric: Metric, count: int) -> None:
    """Restore the update count after restoring the states, and drop the cached ``compute()`` of the old ones."""
    metric._update_count = count
    metric._computed = None


class RunProgressBar(RichProgressBar):
    """Lightning's ``RichProgressBar`` (``callbacks.progress_bar``), labelling the epoch as ``Epoch 3`` in a run that
    ``trainer.max_steps`` bounds (``max_epochs=-1``), where Lightning writes ``Epoch 3/-2``; ``Epoch 3/9`` when
    ``trainer.max_epochs=10`` bounds it. Overrides the private ``_get_train_description``."""

    def _get_train_description(self, current_epoch: int) -> str:
        description = super()._get_train_description(current_epoch)
        max_epochs = self.trainer.max_epochs
        if max_epochs is not None and max_epochs < 0:  # no epoch limit
            description = description.replace(f"Epoch {current_epoch}/{max_epochs - 1}", f"Epoch {current_epoch}", 1)
        return description


def raise_recompile_limit(limit: int) -> None:
    """Let ``torch.compile`` keep at least ``limit`` graphs per function before it falls back to eager
    (``torch._dynamo.config.recompile_limit``, named ``cache_size_limit`` before torch 2.6; torch's own default is 8).
    Checked by ``tests/test_compile.py``."""
    import torch._dynamo.config as dynamo_config

    name = "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"
    setattr(dynamo_config, name, max(getattr(dynamo_config, name), limit))
