"""Checkpoint averaging: keeping step checkpoints while training, the element-wise mean, and its error exits."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from seq2seq_lit.errors import DataError
from seq2seq_lit.inference.checkpoints import (
    AVERAGED_KEY,
    average_checkpoints,
    last_checkpoints,
    load_checkpoint,
)
from seq2seq_lit.inference.translation import translate_lines
from seq2seq_lit.lit_module import TOKENIZERS_KEY
from seq2seq_lit.utils.checkpoint_io import atomic_torch_save

from .conftest import TINY, compose_train, reverse_data_overrides, run_module


@pytest.fixture(scope="module")
def step_checkpoints(reverse_corpus, tmp_path_factory) -> dict[int, Path]:
    """A 6-step run that keeps a checkpoint at every validation (steps 2, 4, 6), as the README's overrides do."""
    from seq2seq_lit.train import train

    output_dir = tmp_path_factory.mktemp("average") / "run"
    overrides = TINY + reverse_data_overrides(reverse_corpus) + [
        "~logger",
        "trainer.max_steps=6",
        "+trainer.val_check_interval=2",
        "trainer.limit_val_batches=1",
        "test=false",
        "callbacks.model_checkpoint.save_top_k=-1",
        "callbacks.attention_heatmaps=null",
        "callbacks.learning_rate_monitor=null",
    ]
    train(compose_train(overrides, output_dir))
    folder = output_dir / "checkpoints"
    return {step: folder / f"step{step:06d}.ckpt" for step in (2, 4, 6)}


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def test_training_keeps_a_checkpoint_per_validation_and_last_is_a_duplicate(step_checkpoints):
    folder = step_checkpoints[2].parent
    assert sorted(p.name for p in folder.glob("*.ckpt")) == ["last.ckpt", "step000002.ckpt", "step000004.ckpt", "step000006.ckpt"]
    # last.ckpt is step 6 again, so the last 2 distinct steps are 4 and 6, whatever the file names
    assert last_checkpoints(folder, 2) == [step_checkpoints[4], step_checkpoints[6]]
    assert last_checkpoints(folder, 3) == [step_checkpoints[2], step_checkpoints[4], step_checkpoints[6]]


def test_average_of_two_copies_is_the_checkpoint_itself(step_checkpoints, tmp_path):
    copy = tmp_path / "copy.ckpt"
    shutil.copy(step_checkpoints[4], copy)
    averaged = average_checkpoints([step_checkpoints[4], copy])
    original = weights(step_checkpoints[4])
    assert averaged["state_dict"].keys() == original.keys()
    for name, tensor in original.items():
        assert torch.equal(averaged["state_dict"][name], tensor), name


def test_average_of_two_checkpoints_is_the_elementwise_mean(step_checkpoints):
    older, newer = weights(step_checkpoints[2]), weights(step_checkpoints[6])
    averaged = average_checkpoints([step_checkpoints[6], step_checkpoints[2]])
    assert any(not torch.equal(older[name], newer[name]) for name in older)
    for name, tensor in averaged["state_dict"].items():
        assert tensor.dtype == older[name].dtype
        torch.testing.assert_close(tensor, (older[name] + newer[name]) / 2, rtol=0, atol=1e-7)

    newest = torch.load(step_checkpoints[6], weights_only=True)
    assert averaged["global_step"] == 6 and averaged["hyper_parameters"] == newest["hyper_parameters"]
    assert averaged[TOKENIZERS_KEY] == newest[TOKENIZERS_KEY]
    paths = [str(step_checkpoints[6].resolve()), str(step_checkpoints[2].resolve())]
    assert averaged[AVERAGED_KEY] == {"paths": paths, "global_steps": [6, 2]}
    assert not {"optimizer_states", "lr_schedulers", "callbacks", "loops"} & averaged.keys()


@pytest.mark.slow
def test_cli_averages_the_last_checkpoints_into_one_that_translates(step_checkpoints, tmp_path):
    output = tmp_path / "out" / "avg.ckpt"
    output.parent.mkdir()  # an output's folder must exist (checked before the inputs are read)
    result = run_module("seq2seq_lit.average", f"ckpt_dir={step_checkpoints[2].parent}", "last=2", f"output={output}")
    assert result.returncode == 0, result.stderr
    assert "same global_step 6" in result.stderr  # last.ckpt skipped
    saved = torch.load(output, weights_only=True)
    assert saved[AVERAGED_KEY]["global_steps"] == [4, 6]
    assert not list(output.parent.glob(".*.tmp"))  # the temporary file was renamed

    module = load_checkpoint(output)
    expected = (weights(step_checkpoints[4])["net.src_embed.weight"] + weights(step_checkpoints[6])["net.src_embed.weight"]) / 2
    torch.testing.assert_close(module.net.src_embed.weight.detach(), expected, rtol=0, atol=1e-7)
    lines = ["a b c", "", "d e f g"]
    outputs = translate_lines(module, lines)
    assert len(outputs) == 3 and outputs[1] == "" and all(isinstance(o, str) for o in outputs)

    # an averaged checkpoint in the folder is not averaged again
    atomic_torch_save(saved, step_checkpoints[2].parent / "avg_in_folder.ckpt")
    try:
        assert last_checkpoints(step_checkpoints[2].parent, 2) == [step_checkpoints[4], step_checkpoints[6]]
    finally:
        (step_checkpoints[2].parent / "avg_in_folder.ckpt").unlink()


def mismatched_copy(source: Path, target: Path, change: str) -> Path:
    checkpoint = torch.load(source, weights_only=True)
    state_dict = checkpoint["state_dict"]
    if change == "shape":
        state_dict["net.src_embed.weight"] = torch.zeros(3, 5)
    elif change == "name":
        state_dict["net.extra.weight"] = state_dict.pop("net.src_embed.weight")
    torch.save(checkpoint, target)
    return target


def test_mismatched_checkpoints_are_refused(step_checkpoints, tmp_path):
    reshaped = mismatched_copy(step_checkpoints[4], tmp_path / "reshaped.ckpt", "shape")
    with pytest.raises(DataError, match=r"net.src_embed.weight is \(3, 5\).*reshaped.ckpt.*a different architecture"):
        average_checkpoints([step_checkpoints[6], reshaped])
    renamed = mismatched_copy(step_checkpoints[4], tmp_path / "renamed.ckpt", "name")
    with pytest.raises(DataError, match="renamed.ckpt lacks parameters of .*step000006.ckpt: net.src_embed.weight"):
        average_checkpoints([step_checkpoints[6], renamed])
    with pytest.raises(DataError, match="no checkpoint to average"):
        average_checkpoints([])
    with pytest.raises(DataError, match="missing.ckpt: checkpoint not found"):
        average_checkpoints([step_checkpoints[6], tmp_path / "missing.ckpt"])


@pytest.mark.slow
def test_mismatched_or_too_few_checkpoints_exit_with_status_2_and_no_traceback(step_checkpoints, tmp_path):
    reshaped = mismatched_copy(step_checkpoints[4], tmp_path / "reshaped.ckpt", "shape")
    result = run_module("seq2seq_lit.average", f"inputs=[{step_checkpoints[6]},{reshaped}]", f"output={tmp_path}/avg.ckpt")
    assert result.returncode == 2
    assert "reshaped.ckpt" in result.stderr and "step000006.ckpt" in result.stderr and "Fix:" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout and not (tmp_path / "avg.ckpt").exists()

    too_few = run_module("seq2seq_lit.average", f"ckpt_dir={step_checkpoints[2].parent}", "last=5", f"output={tmp_path}/avg.ckpt")
    assert too_few.returncode == 2
    assert "fewer than last=5" in too_few.stderr and "step000002.ckpt (step 2)" in too_few.stderr
    assert "Traceback" not in too_few.stderr + too_few.stdout and not (tmp_path / "avg.ckpt").exists()
