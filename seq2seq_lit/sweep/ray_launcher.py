"""``hydra/launcher=ray``: each trial of a multirun is a Ray task that asks for the trial's devices, so N trials run
at once on N GPUs (Ray gives each its own ``CUDA_VISIBLE_DEVICES``) and the next trial takes the first GPU that
frees; the same command runs on a Ray cluster (``hydra.launcher.ray.init.address=HOST:PORT``).

Built on Ray and the Hydra Ray launcher's config schema (pip ``hydra-ray-launcher``, extra ``sweeps``), it runs each
job as that launcher does (``run_job`` in a Ray task), and adds:

- a trial asks for ``trainer.devices`` GPUs when ``trainer.accelerator`` is ``gpu``/``cuda`` (or ``auto`` on a
  cluster with GPUs), and ``ray.remote.num_cpus`` CPUs;
- a trial's error (a ``SystemExit`` included, which would kill the Ray worker and be retried as a crash) is recorded
  in its folder (``trial.json``) and the sweep goes on (:mod:`seq2seq_lit.sweep.trials`);
- Ctrl+C or SIGTERM on the driver asks every running trial to stop (``ray.cancel``, a ``KeyboardInterrupt`` in the
  worker, which ``ResumeCheckpoint`` turns into a ``last.ckpt`` at the end of the current step) and waits up to
  ``STOP_TIMEOUT_S`` for them; running the same command again skips finished trials and resumes the others;
- the driver's ``SEQ2SEQ_*`` and ``WANDB_*`` variables (``ENV_FROM_DRIVER``) are given to the workers through
  ``runtime_env.env_vars``: a cluster's workers do not inherit the driver's environment.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import signal
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError
from .trials import Trial, TrialsFailed, error_line, finished_return, plan_trial, recorded, report, write_record

log = logging.getLogger(__name__)


ENV_FROM_DRIVER = ("SEQ2SEQ_*", "WANDB_*")
"""The driver's environment variables given to every trial (``fnmatch`` patterns): the data and cache folders, W&B's
mode, project and key."""
STOP_TIMEOUT_S = 300.0
"""On Ctrl+C/SIGTERM, how long the driver waits for the running trials to save ``last.ckpt`` (a training step and a
checkpoint; a trial still in its data preparation or test stops without one)."""


class RayTrials:
    """What ``hydra_plugins.seq2seq_lit_sweep.ray_trials.RayTrialLauncher`` (the class Hydra instantiates: a
    launcher must be defined in the ``hydra_plugins`` package) does, kept here so that importing the plugin, which
    Hydra does on every start, imports neither Ray nor the Ray plugin.

    Args:
        ray: ``init`` (keyword arguments of ``ray.init``) and ``remote`` (of ``ray.remote``: ``num_cpus`` a trial
            takes, ``max_retries``, ...). The keys are those of the plugin's schema (``RayLauncherConf``), which
            Hydra matches to the config file of the same name.
    """

    def __init__(self, ray: DictConfig) -> None:
        self.ray_cfg = ray
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import ray

        setup_globals()
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        trials = [plan_trial(self.hydra_context, self.config, o, initial_job_idx + i) for i, o in enumerate(job_overrides)]
        sweep_dir = trials[0].trial_dir.parent if trials else Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        self._start_ray()
        log.info("Ray launcher: %d trials, sweep folder %s", len(trials), sweep_dir)

        returns: dict[int, JobReturn] = {}
        running: dict[Any, Trial] = {}
        for trial in trials:
            log.info("\t#%d %s: %s", trial.num, trial.state, " ".join(filter_overrides(trial.overrides)))
            if trial.state == "finished":
                returns[trial.num] = finished_return(trial.trial_dir, trial.overrides, self.config.get("optimized_metric"))
                continue
            options = {**OmegaConf.to_container(self.ray_cfg.remote, resolve=True), **self._resources(trial.config)}
            remote = ray.remote(_run_trial).options(**options)
            ref = remote.remote(self.hydra_context, trial.config, self.task_function, Singleton.get_state())
            running[ref] = trial

        with _sigterm_as_keyboard_interrupt():
            try:
                pending = list(running)
                while pending:
                    done, pending = ray.wait(pending, num_returns=1)
                    for ref in done:
                        returns[running[ref].num] = self._collect(ref, running[ref])
            except KeyboardInterrupt:
                self._stop(pending, running)
                report(sweep_dir, self.config.get("optimized_metric"))
                raise TrialsFailed("sweep interrupted", 128 + signal.SIGINT) from None
        return [recorded(returns[t.num]) for t in trials]

    def _start_ray(self) -> None:
        import ray

        if ray.is_initialized():
            return
        init = OmegaConf.to_container(self.ray_cfg.init, resolve=True) or {}
        env = {k: v for k, v in os.environ.items() if any(fnmatch.fnmatchcase(k, p) for p in ENV_FROM_DRIVER)}
        runtime_env = dict(init.pop("runtime_env", None) or {})
        runtime_env["env_vars"] = {**env, **{k: str(v) for k, v in (runtime_env.get("env_vars") or {}).items() if v is not None}}
        log.info("Starting Ray: %s (env for the trials: %s)", init, sorted(runtime_env["env_vars"]))
        ray.init(**init, runtime_env=runtime_env)

    def _resources(self, cfg: DictConfig) -> dict[str, float]:
        """``num_gpus`` = ``trainer.devices`` for a trial on GPUs, else 0 (``num_cpus`` comes from ``ray.remote``).

        Raises:
            ConfigError: a GPU trial whose ``trainer.devices`` is not a count or list of devices (``auto``, -1): Ray
                must know how many GPUs to reserve.
        """
        import ray

        accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="auto"))
        on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and ray.cluster_resources().get("GPU", 0) > 0)
        if not on_gpu:
            return {"num_gpus": 0}
        devices = OmegaConf.select(cfg, "trainer.devices")
        if isinstance(devices, int) and devices > 0:
            count = devices
        elif OmegaConf.is_list(devices) or isinstance(devices, (list, tuple)):
            count = len(devices)
        else:
            raise ConfigError(
                f"hydra/launcher=ray: trainer.devices={devices} on GPUs: Ray must know how many GPUs a trial takes. "
                f"Fix: trainer.devices=N (a count; Ray chooses which GPUs and sets CUDA_VISIBLE_DEVICES)"
            )
        return {"num_gpus": count}

    def _collect(self, ref: Any, trial: Trial) -> JobReturn:
        """The trial's :class:`JobReturn`; a Ray-level failure (the worker died: out of memory, killed) becomes a
        failed return recorded in its folder, so that the sweep goes on."""
        import ray

        try:
            return ray.get(ref)
        except ray.exceptions.RayError as exc:
            ret = JobReturn(overrides=trial.overrides, working_dir=str(trial.trial_dir), task_name="train", status=JobStatus.FAILED)
            ret._return_value = RuntimeError(error_line(exc))
            write_record(trial.trial_dir, trial.overrides, "failed", error=error_line(exc))
            return ret

    def _stop(self, pending: list[Any], running: dict[Any, Trial]) -> None:
        """Ask the running trials to stop with a checkpoint; cancel those not started; wait for them."""
        import ray

        log.warning("Interrupted: stopping %d unfinished trials (each saves checkpoints/last.ckpt; waiting up to %.0f s). "
                    "Run the same command again to finish the sweep.", len(pending), STOP_TIMEOUT_S)
        for ref in pending:
            ray.cancel(ref)  # a KeyboardInterrupt in a running task; a task not started yet never starts
        deadline = time.monotonic() + STOP_TIMEOUT_S
        left = list(pending)
        while left and time.monotonic() < deadline:
            _, left = ray.wait(left, num_returns=len(left), timeout=max(0.0, deadline - time.monotonic()))
        for ref in left:
            log.error("trial %s did not stop within %.0f s", running[ref].trial_dir, STOP_TIMEOUT_S)


def _run_trial(hydra_context: HydraContext, sweep_config: DictConfig, task_function: TaskFunction, singleton_state: dict) -> JobReturn:
    """Run one trial in a Ray worker, as Hydra's Ray launcher does, but never let an exception or ``SystemExit`` out
    (Ray would report a crashed worker and retry it): it is recorded in the trial's folder and returned."""
    from hydra.core.hydra_config import HydraConfig

    setup_globals()
    Singleton.set_state(singleton_state)
    HydraConfig.instance().set_config(sweep_config)
    trial_dir = Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)
    overrides = list(sweep_config.hydra.overrides.task)
    try:
        ret = run_job(hydra_context=hydra_context, task_function=task_function, config=sweep_config,
                      job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
    except BaseException as exc:  # SystemExit, KeyboardInterrupt outside training: the job's callbacks did not run
        # a run stopped by a signal exits 128 + signum after its last.ckpt (seq2seq_lit.utils.entry.RunInterrupted)
        stopped = isinstance(exc, KeyboardInterrupt) or (isinstance(exc, SystemExit) and exc.code in (130, 143))
        status = "stopped" if stopped else "failed"
        write_record(trial_dir, overrides, status, error=error_line(exc))
        ret = JobReturn(overrides=overrides, working_dir=str(trial_dir), task_name="train", status=JobStatus.FAILED)
        ret._return_value = exc
    if ret.status == JobStatus.FAILED:
        # the driver unpickles this: an exception class of the trial's code may not be importable or picklable there
        ret._return_value = RuntimeError(error_line(ret._return_value))
    return ret


@contextmanager
def _sigterm_as_keyboard_interrupt() -> Iterator[None]:
    """SIGTERM on the driver (a scheduler stopping it) stops the sweep as Ctrl+C does."""
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
