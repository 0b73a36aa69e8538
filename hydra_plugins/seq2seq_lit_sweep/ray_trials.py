"""The Hydra launcher class of ``hydra/launcher=ray`` (``conf/hydra/launcher/ray.yaml``).

Hydra instantiates launchers only from the ``hydra_plugins`` namespace package, and imports every module of it on each
start: this one stays light (no Ray import) and hands the work to :mod:`seq2seq_lit.sweep.ray_launcher`.
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class RayTrialLauncher(Launcher):
    """Each trial a Ray task with its devices; failed trials recorded, stopped ones resumable (see
    :mod:`seq2seq_lit.sweep.ray_launcher`)."""

    def __init__(self, ray: DictConfig) -> None:
        from seq2seq_lit.sweep.ray_launcher import RayTrials

        self.trials = RayTrials(ray)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.trials.config, self.trials.hydra_context, self.trials.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        return self.trials.launch(job_overrides, initial_job_idx)
