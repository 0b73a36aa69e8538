"""Trial records of a multirun (seq2seq_lit/sweep/trials.py), the launcher's resource request, and the sweep folder
composed in a multirun's driver (paths.root_dir without a HydraConfig)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from seq2seq_lit.errors import ConfigError
from seq2seq_lit.sweep.trials import (
    FailedTrial,
    error_line,
    format_table,
    prior_state,
    read_records,
    recorded,
    write_record,
)
from seq2seq_lit.utils.entry import launch_dir

from .conftest import compose_train


def make_trial(folder: Path, overrides: list[str], *files: str) -> Path:
    (folder / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), folder / ".hydra" / "overrides.yaml")
    for name in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("{}")
    return folder


def test_prior_state_new_finished_resumable(tmp_path):
    assert prior_state(tmp_path / "0", ["a=1"]) == "new"
    assert prior_state(make_trial(tmp_path / "1", ["a=1"]), ["a=1"]) == "new"  # started, killed before a checkpoint
    assert prior_state(make_trial(tmp_path / "2", ["a=1"], "checkpoints/last.ckpt"), ["a=1"]) == "resumable"
    finished = make_trial(tmp_path / "3", ["a=1"], "checkpoints/last.ckpt", "metrics.json")
    assert prior_state(finished, ["a=1"]) == "finished"
    resumed = make_trial(tmp_path / "4", ["a=1", "ckpt_path=last"], "checkpoints/last.ckpt")  # a resume's record
    assert prior_state(resumed, ["a=1"]) == "resumable"


def test_a_folder_of_another_sweep_is_refused_with_the_fix(tmp_path):
    folder = make_trial(tmp_path / "0", ["a=1"], "metrics.json")
    with pytest.raises(ConfigError, match=r"overrides.yaml: this trial folder holds the overrides \['a=1'\].*hydra.sweep.dir"):
        prior_state(folder, ["a=2"])


def test_error_line_names_the_innermost_cause():
    try:
        try:
            raise ValueError("dropout probability has to be between 0 and 1, but got 1.5\nmore")
        except ValueError as inner:
            raise RuntimeError("Error in call to target 'Seq2SeqLitModule':") from inner
    except RuntimeError as outer:
        assert error_line(outer) == "ValueError: dropout probability has to be between 0 and 1, but got 1.5"


def test_a_failed_return_is_recorded_and_does_not_raise_in_the_sweeper():
    ret = JobReturn(overrides=["a=1"], working_dir="/x/0", task_name="train", status=JobStatus.FAILED)
    ret.return_value = ValueError("bad")
    with pytest.raises(ValueError):
        ret.return_value  # what Hydra's basic sweeper reads, which would end the sweep
    failed = recorded(ret)
    assert isinstance(failed, FailedTrial) and failed.status == JobStatus.FAILED and failed.return_value is None
    done = JobReturn(status=JobStatus.COMPLETED)
    done.return_value = 1.5
    assert recorded(done) is done


def test_table_lists_status_metric_and_only_the_swept_overrides(tmp_path):
    for i, (att, status) in enumerate([("dot", "finished"), ("general", "failed"), ("concat", "stopped")]):
        make_trial(tmp_path / str(i), ["common=1", f"model/attention={att}"])
        write_record(tmp_path / str(i), ["common=1", f"model/attention={att}"], status, 12.5 if status == "finished" else None,
                     None if status == "finished" else f"{status} here")
    make_trial(tmp_path / "3", ["common=1", "model/attention=additive"])  # killed: no trial.json
    (tmp_path / "multirun.yaml").write_text("")
    rows = read_records(tmp_path)
    assert [(n, r["status"]) for n, r in rows] == [("0", "finished"), ("1", "failed"), ("2", "stopped"), ("3", "stopped")]
    table = format_table(rows, "val/bleu_best").splitlines()
    assert table[0].split()[:3] == ["trial", "status", "val/bleu_best"]
    assert table[1].split() == ["0", "finished", "12.5000", "model/attention=dot"]
    assert table[2].split() == ["1", "failed", "model/attention=general:", "failed", "here"]
    assert "common=1" not in "\n".join(table)
    assert json.loads((tmp_path / "0" / "trial.json").read_text())["value"] == 12.5


def test_root_dir_in_a_multirun_driver_is_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "launch").mkdir()
    (tmp_path / "worker").mkdir()
    monkeypatch.chdir(tmp_path / "launch")
    HydraConfig.instance().cfg = None  # the driver: no job has set it
    assert launch_dir() == str(tmp_path / "launch")
    compose_train([], tmp_path / "run")  # composed here, as Hydra composes a job, and set as the job's HydraConfig
    monkeypatch.chdir(tmp_path / "worker")  # a Ray worker runs in another folder
    assert launch_dir() == str(tmp_path / "launch")
    HydraConfig.instance().cfg = None


@pytest.mark.parametrize(
    "trainer,expected",
    [
        ({"accelerator": "cpu", "devices": 1}, {"num_gpus": 0}),
        ({"accelerator": "gpu", "devices": 2}, {"num_gpus": 2}),
        ({"accelerator": "cuda", "devices": [0, 3]}, {"num_gpus": 2}),
    ],
)
def test_a_trial_asks_ray_for_its_devices(trainer, expected):
    from seq2seq_lit.sweep.ray_launcher import RayTrials

    launcher = RayTrials(OmegaConf.create({"init": {}, "remote": {"num_cpus": 1}}))
    assert launcher._resources(OmegaConf.create({"trainer": trainer})) == expected


def test_a_gpu_trial_without_a_device_count_is_refused():
    from seq2seq_lit.sweep.ray_launcher import RayTrials

    launcher = RayTrials(OmegaConf.create({"init": {}, "remote": {}}))
    with pytest.raises(ConfigError, match=r"trainer.devices=auto on GPUs.*Fix: trainer.devices=N"):
        launcher._resources(OmegaConf.create({"trainer": {"accelerator": "gpu", "devices": "auto"}}))
