"""Every private Lightning / torchmetrics name of :mod:`seq2seq_lit.utils.lightning_internals` exists on live objects
of the installed versions, and those versions are the ones pinned; an upgrade that moves a name fails here, naming it."""

from __future__ import annotations

import operator
from importlib.metadata import version

import lightning as L
import pytest
from lightning.pytorch.callbacks import RichProgressBar
from packaging.requirements import Requirement
from torchmetrics import MeanMetric

from seq2seq_lit.utils import lightning_internals
from seq2seq_lit.utils.lightning_internals import PRIVATE_NAMES

from .conftest import REPO


@pytest.fixture(scope="module")
def owners() -> dict:
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    ddp_trainer = L.Trainer(accelerator="cpu", strategy="ddp", devices=2, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False)  # builds the launcher; starts no process before fit
    return {"trainer": trainer, "ddp_trainer": ddp_trainer, "metric": MeanMetric(), "progress_bar": RichProgressBar()}


@pytest.mark.parametrize("private", PRIVATE_NAMES, ids=[f"{p.owner}.{p.name}" for p in PRIVATE_NAMES])
def test_private_name_exists(private, owners):
    root, _, path = private.owner.partition(".")
    owner = operator.attrgetter(path)(owners[root]) if path else owners[root]
    assert hasattr(owner, private.name), (
        f"{type(owner).__module__}.{type(owner).__qualname__} has no {private.name} any more "
        f"(lightning {version('lightning')}, torchmetrics {version('torchmetrics')}): update "
        f"{private.used_by} in seq2seq_lit/utils/lightning_internals.py"
    )
    for function in private.used_by.split(", "):
        assert callable(getattr(lightning_internals, function)), function


def test_the_adapter_reads_a_fresh_trainer_and_metric(owners):
    trainer, metric = owners["trainer"], owners["metric"]
    assert lightning_internals.replaces_samplers(trainer) is True  # Lightning's default
    metric.update(2.0)
    metric.update(4.0)
    assert lightning_internals.metric_update_count(metric) == 2 and float(metric.compute()) == 3.0
    lightning_internals.set_metric_update_count(metric, 5)
    assert lightning_internals.launched_processes(trainer) == []  # one process: no launcher
    assert lightning_internals.launched_processes(owners["ddp_trainer"]) is owners["ddp_trainer"].strategy.launcher.procs
    assert lightning_internals.metric_update_count(metric) == 5 and metric._computed is None


@pytest.mark.parametrize("package", ["lightning", "torchmetrics"])
def test_the_installed_version_is_the_pinned_minor_release(package):
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    requirement = next(Requirement(d) for d in dependencies if Requirement(d).name == package)
    assert version(package) in requirement.specifier, f"{package} {version(package)} is not {requirement}"
    major, minor = version(package).split(".")[:2]
    assert f"{major}.{int(minor) + 1}.0" not in requirement.specifier  # the next minor release is not let in


@pytest.mark.parametrize("max_epochs, label", [(-1, "Epoch 3"), (10, "Epoch 3/9")])
def test_the_progress_bar_labels_an_epoch_without_a_negative_total(max_epochs, label):
    bar = lightning_internals.RunProgressBar()
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, callbacks=[bar], max_epochs=max_epochs, max_steps=100)
    bar.setup(trainer, None, "fit")  # what fit does first
    assert bar._get_train_description(3).strip() == label
