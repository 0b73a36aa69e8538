"""Average checkpoints: ``python -m seq2seq_lit.average inputs=[A,B,...] output=FILE`` or
``... ckpt_dir=DIR last=N output=FILE`` (console script ``s2s-average``).

Writes one inference checkpoint whose floating-point weights are the element-wise mean of the inputs'
(:func:`~seq2seq_lit.inference.checkpoints.average_checkpoints`), usable by ``s2s-translate`` and ``s2s-eval`` like any other.
With ``ckpt_dir``, the inputs are the ``last`` checkpoints of the folder by the ``global_step`` stored inside each file
(:func:`~seq2seq_lit.inference.checkpoints.last_checkpoints`). Config: ``conf/average.yaml``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf

from .errors import ConfigError
from .inference.checkpoints import AVERAGED_KEY, average_checkpoints, last_checkpoints
from .utils.checkpoint_io import atomic_torch_save
from .utils.entry import CONFIG_PATH, exit_2_on_config_errors, run_entry_point
from .utils.output_guard import check_output_location, check_output_path

log = logging.getLogger(__name__)


def average(cfg: DictConfig) -> Path:
    """Average the configured checkpoints and write ``cfg.output``; returns its path.

    Raises:
        ConfigError: ``output`` is missing, a folder or in a missing folder; it is one of the inputs or a training
            checkpoint (its optimizer state and step would be lost) and ``overwrite`` is false; or not exactly one of
            ``inputs`` and ``ckpt_dir`` (with ``last`` >= 1) is given.
        DataError: see :func:`~seq2seq_lit.inference.checkpoints.average_checkpoints` and
            :func:`~seq2seq_lit.inference.checkpoints.last_checkpoints`.
    """
    if OmegaConf.is_missing(cfg, "output") or not cfg.output:
        raise ConfigError("no output file; fix: pass output=PATH.ckpt")
    overwrite = bool(cfg.get("overwrite"))
    output = check_output_location("output", cfg.output)  # the rest once the inputs are known
    inputs = cfg.get("inputs")
    if isinstance(inputs, str):
        inputs = [inputs]
    if bool(inputs) == bool(cfg.get("ckpt_dir")):
        raise ConfigError(
            "give either inputs=[A.ckpt,B.ckpt,...] or ckpt_dir=DIR last=N (not both, not neither); fix: e.g. "
            "s2s-average ckpt_dir=logs/train/runs/<run>/checkpoints last=5 output=avg.ckpt"
        )
    if cfg.ckpt_dir:
        if not isinstance(cfg.get("last"), int) or isinstance(cfg.last, bool) or cfg.last < 1:
            raise ConfigError(
                f"last={cfg.get('last')!r} with ckpt_dir; fix: pass last=N, the number of checkpoints to average (N >= 1)"
            )
        paths = last_checkpoints(cfg.ckpt_dir, cfg.last, exclude=[output])
    else:
        if not isinstance(inputs, (list, ListConfig)):
            raise ConfigError(f"inputs={inputs!r}; fix: pass a list, inputs=[A.ckpt,B.ckpt]")
        paths = [Path(p) for p in inputs]
    check_output_path(
        "output", output, inputs=[(f"inputs[{i}]", p) for i, p in enumerate(paths)], overwrite=overwrite,
        replaces="inference checkpoint",
    )
    if len(paths) == 1:
        log.warning("only one checkpoint: the output is a copy of its weights without the training state")
    checkpoint = average_checkpoints(paths)
    atomic_torch_save(checkpoint, output)
    log.info("averaged %s (global steps %s) into %s", ", ".join(map(str, paths)),
             ", ".join(map(str, checkpoint[AVERAGED_KEY]["global_steps"])), output)
    return output


@exit_2_on_config_errors
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="average.yaml")
def main(cfg: DictConfig) -> None:
    run_entry_point(average, cfg)


if __name__ == "__main__":
    main()
