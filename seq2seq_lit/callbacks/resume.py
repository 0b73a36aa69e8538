"""Keep a ``last.ckpt`` from which a run resumes exactly: every N steps, on SIGINT/SIGTERM, and at the end."""

from __future__ import annotations

import logging
import random
import signal
import subprocess
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import Checkpoint
from torchmetrics import Metric

from ..errors import ConfigError
from ..utils.entry import RunInterrupted
from ..utils.lightning_internals import (
    batch_ends_an_accumulation,
    epoch_batches_done,
    launched_processes,
    metric_update_count,
    set_metric_update_count,
    validation_due,
)

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ResumeCheckpoint(Checkpoint):
    """Write ``<dirpath>/last.ckpt`` every ``every_n_train_steps`` optimizer steps, when the run receives SIGINT or
    SIGTERM, and when training ends; resuming from it (``ckpt_path=last``) continues as the uninterrupted run would.

    Lightning's checkpoints already hold the weights, optimizer, LR schedulers, loop progress (step and epoch), the
    training DataLoader's position (:class:`~seq2seq_lit.data.datamodule.ResumableDataLoader`) and the other callbacks'
    state. This callback adds what an exact continuation also needs: the random number generators (dropout,
    scheduled-sampling coins) of every process, one entry per rank gathered when the checkpoint is saved and each
    rank's own restored on resume, and the LightningModule's metric states (``val/bleu_best``). A checkpoint resumes
    only with the number of processes that wrote it (else :class:`~seq2seq_lit.errors.ConfigError` when training
    starts).

    It saves only after a training step that neither a validation nor the end of the epoch follows: Lightning resumes
    a checkpoint saved at the end of a training batch after that batch, skipping the validation and the epoch-end
    work the batch would have triggered. A save that falls on such a step happens after the next step instead.

    SIGINT (Ctrl+C) and SIGTERM (sent by schedulers before they stop a job) are handled while training: the current
    step, and a validation in progress, finish; then the checkpoint is saved and the run stops with
    :class:`~seq2seq_lit.utils.entry.RunInterrupted` (exit status 130 or 143). A second signal stops the run at once,
    without a checkpoint (same exit status). A SIGKILL cannot be caught: the run resumes from the latest periodic
    checkpoint.

    With several processes (DDP) the signal handler only notes the signal; the processes agree on it after every
    training batch, all at the same point, with one ``all_reduce`` (max) of the signal number through the strategy
    (``Strategy.reduce``, as Lightning's ``EarlyStopping`` agrees on ``should_stop``). A signal that reached one rank
    only (the launcher, or rank 1), whatever collective that rank was in (a validation, a checkpoint, an epoch's end),
    therefore stops every rank after the same step: all save together (rank 0 writes) and all raise
    :class:`~seq2seq_lit.utils.entry.RunInterrupted`. The launching process then waits for the ranks it started
    (:func:`wait_for_launched_ranks`), so that its exit means the whole run has ended. A second signal on the
    launcher kills the ranks it started (SIGKILL) before it stops.

    Args:
        dirpath: folder of the checkpoint.
        every_n_train_steps: save after every this many optimizer steps; 0 saves only on a signal and at the end.
        filename: checkpoint file name, without ``.ckpt``.

    Attributes:
        saved_step: the global step of the latest save (at first, the step training started from).
    """

    def __init__(self, dirpath: str, every_n_train_steps: int = 500, filename: str = "last") -> None:
        if every_n_train_steps < 0:
            raise ValueError(f"every_n_train_steps={every_n_train_steps}: must be >= 0 (0: only on signals and at the end)")
        self.dirpath = Path(dirpath)
        self.every_n_train_steps = every_n_train_steps
        self.filename = filename
        self.saved_step = 0
        self._signal: int | None = None  # the signal this process received (set by the handler)
        self._agreed: int | None = None  # the signal every rank stops on (after the per-batch agreement)
        self._stop_pending = False
        self._trainer: L.Trainer | None = None
        self._previous_handlers: dict[int, Any] = {}
        self._restored: dict[str, Any] | None = None
        self._module: L.LightningModule | None = None

    @property
    def path(self) -> Path:
        """Where the checkpoint is written."""
        return self.dirpath / f"{self.filename}.ckpt"

    # -- saving ------------------------------------------------------------------------------------------------------

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.saved_step = trainer.global_step
        if self._restored is not None:
            _set_rng_states(_rank_rng_state(self._restored["rng"], trainer))
            _set_metric_states(pl_module, self._restored["metrics"])
            self._restored = None
        self._trainer = trainer
        self._install_signal_handlers()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._agreed is None:
            self._agreed = _agreed_signal(trainer, self._signal)
        n = self.every_n_train_steps
        due = n > 0 and trainer.global_step // n > self.saved_step // n
        if not (due or self._agreed is not None) or not self._resumable_here(trainer):
            return
        self._save(trainer)
        self._stop_pending = self._agreed is not None
        if self._stop_pending:
            take_launched_ranks(trainer)  # they exit 143 like this one: not a crash for Lightning's process observer

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self._stop_pending:  # stop here rather than right after saving, so that the loggers got the last step
            self._stop(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning 2.6 (FitLoop.on_advance_end) steps the epoch-interval ReduceLROnPlateau schedulers only "if not
        # self.restarting", and a fit loop restored from a checkpoint stays "restarting" until the end of its first
        # epoch: the epoch in which a run resumes would end without the plateau step on its validation score. Step
        # them here, just before the point where the uninterrupted run does. (Other epoch schedulers are stepped
        # at the epoch's last batch, resumed or not.)
        fit_loop = trainer.fit_loop
        if not fit_loop.restarting or not epoch_batches_done(trainer):
            return
        monitors = [c.monitor for c in trainer.lr_scheduler_configs if c.reduce_on_plateau and c.interval == "epoch"]
        if missing := [m for m in monitors if m not in trainer.callback_metrics]:
            log.warning("not stepping ReduceLROnPlateau after the resumed epoch: %s was not logged", ", ".join(missing))
        elif monitors:
            fit_loop.epoch_loop.update_lr_schedulers("epoch", update_plateau_schedulers=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_signal_handlers()
        if self._agreed is None:  # a signal during the last step: every rank must know, or one would go on testing
            self._agreed = _agreed_signal(trainer, self._signal)
        if not trainer.fast_dev_run:
            self._save(trainer)
        if self._agreed is not None:
            take_launched_ranks(trainer)
            self._stop(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        # Nothing is saved on an error: the state may be half-way through a step, or broken (NaN).
        self._restore_signal_handlers()

    def _resumable_here(self, trainer: L.Trainer) -> bool:
        """Whether a checkpoint saved now resumes exactly: right after an optimizer step, and neither a validation
        nor the epoch's end comes next."""
        return not (
            trainer.fast_dev_run
            or trainer.sanity_checking
            or not batch_ends_an_accumulation(trainer)
            or epoch_batches_done(trainer)
            or validation_due(trainer)
        )

    def _save(self, trainer: L.Trainer) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)  # through the trainer's CheckpointIO (atomic)
        self.saved_step = trainer.global_step
        log.info("saved %s at step %d", self.path, trainer.global_step)

    def _stop(self, trainer: L.Trainer) -> None:
        assert self._agreed is not None
        name = signal.Signals(self._agreed).name
        rank = f" (rank {trainer.global_rank})" if trainer.world_size > 1 else ""
        raise RunInterrupted(
            f"{name} received{rank}: saved {self.path} at step {trainer.global_step}. Resume with the same overrides "
            f"plus ckpt_path={self.path} (or ckpt_path=last hydra.run.dir={trainer.default_root_dir})",
            self._agreed,
        )

    # -- signals -----------------------------------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        self._signal, self._agreed, self._stop_pending = None, None, False
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in SIGNALS:
            self._previous_handlers[signum] = signal.getsignal(signum)
            signal.signal(signum, self._on_signal)

    def _restore_signal_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers = {}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._signal is not None:  # a second signal: stop at once, without a checkpoint (exit 128 + signum)
            if self._trainer is not None:  # the ranks this process started would wait for it in a collective
                for proc in take_launched_ranks(self._trainer):
                    proc.kill()
            raise RunInterrupted(
                f"{signal.Signals(signum).name} received again: stopped at once, without saving a checkpoint. Resume "
                f"from the last one saved, {self.path} (ckpt_path=last), if there is one", signum,
            )
        self._signal = signum
        log.warning(
            "%s received: stopping after the current training step with a checkpoint in %s (send it again to stop at "
            "once, without one)", signal.Signals(signum).name, self.path,
        )

    # -- state -------------------------------------------------------------------------------------------------------

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._module = pl_module

    def state_dict(self) -> dict[str, Any]:
        # Called on every process while a checkpoint is saved (rank 0 writes it): the states of all ranks go in.
        return {"rng": _gathered(_rng_states()), "metrics": _metric_states(self._module) if self._module is not None else {}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = state_dict  # applied in on_train_start, after Lightning's set-up has used random numbers


def _agreed_signal(trainer: L.Trainer, received: int | None) -> int | None:
    """The signal every rank stops on: the largest one any rank received (SIGTERM 15 over SIGINT 2), None if none.

    A collective: every rank calls it at the same point (after each training batch, and when training ends). With
    one process it is ``received``.
    """
    if trainer.world_size == 1:
        return received
    mine = torch.tensor(received or 0, device=trainer.strategy.root_device)
    agreed = int(trainer.strategy.reduce(mine, reduce_op="max").item())
    return agreed or None


def take_launched_ranks(trainer: L.Trainer) -> list[subprocess.Popen]:
    """The processes of the other ranks that this process started (Lightning's ``ddp`` launcher on rank 0), taken
    from Lightning's process observer, which would otherwise read their exit status 143 after a signal as a crash
    and SIGKILL this process before it exits with its own 143. Empty where the ranks were started by something else
    (torchrun, SLURM) or on a later call."""
    launched = launched_processes(trainer)
    taken, launched[:] = list(launched), []
    _TAKEN.extend(taken)
    return taken


_TAKEN: list[subprocess.Popen] = []


def wait_for_launched_ranks(timeout: float = 60.0) -> None:
    """Wait for the ranks taken by :func:`take_launched_ranks` to exit, logging each one's exit status, so that this
    process ends after the whole run; kill any still running after ``timeout`` seconds (it would hang in a
    collective with no peer)."""
    while _TAKEN:
        proc = _TAKEN.pop()
        try:
            status = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            status = proc.wait()
            log.warning("a training process (pid %d) had not exited %.0f s after the stop: killed it", proc.pid, timeout)
        log.info("training process %d exited with status %d", proc.pid, status if status >= 0 else 128 - status)


def _rng_states() -> dict[str, Any]:
    """The states of the random number generators, as tensors and plain containers (loadable weights-only)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _gathered(state: dict[str, Any]) -> list[dict[str, Any]]:
    """``state`` of every process, by rank (a list of one without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [state]
    states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, state)
    return states


def _rank_rng_state(saved: list[dict[str, Any]] | dict[str, Any], trainer: L.Trainer) -> dict[str, Any]:
    """This process' random state among the ``saved`` ones (one per rank).

    Raises:
        ConfigError: the checkpoint was written by another number of processes: each process resumes its own random
            stream and its own share of the epoch's batches, which a different number of processes cannot continue.
    """
    if isinstance(saved, dict):  # written before the states were saved per rank: rank 0's state only
        if trainer.world_size > 1:
            log.warning("the checkpoint holds the random state of rank 0 only: every rank resumes from it")
        return saved
    if len(saved) != trainer.world_size:
        raise ConfigError(
            f"ckpt_path={trainer.ckpt_path}: the checkpoint was written by {len(saved)} training process(es), this run "
            f"has {trainer.world_size}; a run resumes exactly only with the same number (each process continues its "
            f"own random stream and share of the batches). Fix: set trainer.devices and trainer.num_nodes so that "
            f"their product is {len(saved)}, or train anew without ckpt_path"
        )
    return saved[trainer.global_rank]


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(_tuples(states["python"]))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in states and torch.cuda.is_available():
        if len(states["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states["cuda"])
        else:
            log.warning("not restoring the CUDA random states: the checkpoint has %d devices", len(states["cuda"]))


def _tuples(value: Any) -> Any:
    """``random.setstate`` needs tuples where a round trip may have made lists."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _metric_states(pl_module: L.LightningModule) -> dict[str, Any]:
    """The tensor states of the module's torchmetrics metrics (which are not in its state_dict), by module name."""
    return {
        name: {
            "states": {k: v.detach().cpu().clone() for k, v in metric.metric_state.items() if isinstance(v, torch.Tensor)},
            "updates": metric_update_count(metric),
        }
        for name, metric in pl_module.named_modules()
        if isinstance(metric, Metric) and name
    }


def _set_metric_states(pl_module: L.LightningModule, states: dict[str, Any]) -> None:
    for name, saved in states.items():
        try:
            metric = pl_module.get_submodule(name)
        except AttributeError:
            log.warning("the checkpoint has the state of a metric %r that this model lacks", name)
            continue
        for key, value in saved["states"].items():
            setattr(metric, key, value.to(metric.device))
        set_metric_update_count(metric, saved["updates"])
