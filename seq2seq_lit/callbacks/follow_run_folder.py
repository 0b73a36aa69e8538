"""Resuming a run folder that was copied or moved: its best checkpoint follows the folder (issue 26, case 6)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

log = logging.getLogger(__name__)

_PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")


class FollowRunFolder(L.Callback):
    """Re-root the paths that a :class:`~lightning.pytorch.callbacks.ModelCheckpoint` stored in a checkpoint when the
    run is resumed from another folder (``ckpt_path=last hydra.run.dir=<a copy of the run>``).

    Lightning keeps the best checkpoint's score and the top-k list only when the checkpoint folder is the one that
    wrote them; from a copy it logs "The dirpath has changed", forgets the best score, and the first checkpoint saved
    after resuming becomes "the best" whatever its score, so the copy tests a worse model. Here, before the callbacks'
    states are loaded, every stored path under the old ``dirpath`` is moved to the same name under the new one, and
    ``dirpath`` with it: the resumed copy behaves as a resume in place (best score, top-k, the tested checkpoint).
    A stored best file missing from the copy is named in a warning.
    """

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("callbacks") or {}
        for callback in trainer.callbacks:
            state = states.get(callback.state_key) if isinstance(callback, ModelCheckpoint) else None
            if not state or not callback.dirpath or not state.get("dirpath") or state["dirpath"] == callback.dirpath:
                continue
            old, new = Path(state["dirpath"]), Path(callback.dirpath)
            for key in _PATH_KEYS:
                if state.get(key):
                    state[key] = _reroot(state[key], old, new)
            if isinstance(state.get("best_k_models"), dict):
                state["best_k_models"] = {_reroot(p, old, new): score for p, score in state["best_k_models"].items()}
            state["dirpath"] = callback.dirpath
            log.info("resuming a run from another folder: checkpoint paths moved from %s to %s", old, new)
            best = state.get("best_model_path")
            if best and not Path(best).is_file():
                log.warning(
                    "the best checkpoint %s is not in this run's folder (it was not copied); the test will use the "
                    "best one saved from now on", best,
                )


def _reroot(path: str, old: Path, new: Path) -> str:
    try:
        return str(new / Path(path).relative_to(old))
    except ValueError:  # saved outside the checkpoint folder: left as it was
        return path
