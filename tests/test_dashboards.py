"""Dashboards without an account: a run's hyperparameters for TensorBoard's HPARAMS tab, TensorBoard run folders and
MLflow runs named by the job's overrides, and a finished 2-trial sweep seen in TensorBoard and ``mlflow ui`` (their
HTTP APIs, and headless Chromium screenshots; ``SEQ2SEQ_SCREENSHOT_DIR=docs/figures`` keeps them)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig

from seq2seq_lit.errors import ConfigError
from seq2seq_lit.utils.loggers import configure_mlflow, run_folder_name_from_overrides, run_hparams

from .conftest import REPO, TINY, compose_train, reverse_data_overrides, run_module
from .dashboard_helpers import distinct_colours, free_port, get_json, post_json, save_screenshot, screenshot, server

BIN = Path(sys.executable).parent
MULTI30K = Path(os.environ.get("SEQ2SEQ_DATA_DIR", "/nonexistent")) / "multi30k"
ATTENTIONS = ("general", "additive")
TB_METRICS = ("test/bleu", "test/chrf", "val/bleu_best")


def test_run_hparams_hold_the_chosen_options_main_keys_and_every_overridden_key(reverse_corpus, tmp_path):
    overrides = ["model/attention=additive", "model.encoder.hidden_size=48", "+trainer.profiler=simple",
                 "model.length_buckets=[5,10]", f"paths.cache_dir={tmp_path}", *reverse_data_overrides(reverse_corpus)]
    cfg = compose_train(overrides, tmp_path / "run")  # sets HydraConfig, as a run of s2s-train has it
    hparams = run_hparams(cfg)
    assert hparams["model/attention"] == "additive" and hparams["model/decoder"] == "luong"
    assert hparams["data"] == "parallel_text" and hparams["model/search"] == "greedy"
    assert hparams["model.encoder.hidden_size"] == 48 and hparams["trainer.profiler"] == "simple"
    assert hparams["model.length_buckets"] == "[5, 10]"  # a list as YAML: TensorBoard takes numbers and strings
    assert hparams["model.optimizer.lr"] == cfg.model.optimizer.lr and hparams["seed"] == cfg.seed
    assert hparams["trainer.max_steps"] == cfg.trainer.max_steps
    assert not any(key.startswith(("paths.", "data.train_", "data.test_")) for key in hparams)  # where, not what
    assert all(isinstance(v, (bool, int, float, str)) for v in hparams.values())
    name = run_folder_name_from_overrides()  # "/" made "." in one folder name, at most 128 characters
    assert name.startswith("model.attention=additive,model.encoder.hidden_size=48,+trainer.profiler=simple,") and len(name) == 128


def test_mlflow_logger_is_named_by_the_overrides_and_grouped_by_its_experiment(tmp_path):
    from omegaconf import OmegaConf

    compose_train(["model/attention=dot", "trainer.max_steps=600", "experiment=luong2015"], tmp_path / "run")
    assert HydraConfig.get().runtime.choices["experiment"] == "luong2015"
    logger_cfg = OmegaConf.create({"_target_": "lightning.pytorch.loggers.MLFlowLogger", "tracking_uri": f"sqlite:///{tmp_path}/mlflow/mlflow.db",
                                   "experiment_name": None, "run_name": None, "tags": {"mine": "kept"}})
    configure_mlflow("mlflow", logger_cfg)
    assert logger_cfg.run_name == "model/attention=dot,trainer.max_steps=600,experiment=luong2015"
    assert logger_cfg.experiment_name == "luong2015"  # a single run: the experiment; a multirun: train/<folder>
    assert logger_cfg.tags["attention"] == "dot" and logger_cfg.tags["mine"] == "kept"
    assert logger_cfg.tags["hydra_overrides"] == "model/attention=dot,trainer.max_steps=600,experiment=luong2015"
    configure_mlflow("mlflow", logger_cfg)  # the experiment exists already (another trial made it): no error

    from mlflow import MlflowClient

    assert MlflowClient(f"sqlite:///{tmp_path}/mlflow/mlflow.db").get_experiment_by_name("luong2015") is not None


def test_mlflow_logger_without_mlflow_says_what_to_install(monkeypatch, tmp_path):
    from omegaconf import OmegaConf

    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    with pytest.raises(ConfigError, match=r"logger\.mlflow: .*pip install 'seq2seq-lit\[mlflow\]'"):
        configure_mlflow("mlflow", OmegaConf.create({"_target_": "lightning.pytorch.loggers.MLFlowLogger"}))



def test_tensorboard_session_holds_the_hparams_and_the_texts_after_the_runs_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata
    from torch.utils.tensorboard import SummaryWriter

    from seq2seq_lit.utils.loggers import write_tensorboard_session

    with SummaryWriter(log_dir=str(tmp_path)) as writer:  # the run's own scalars, as Lightning logs them
        writer.add_scalar("test/bleu", 24.5, global_step=60)
    write_tensorboard_session(tmp_path, {"model/attention": "general", "model.optimizer.lr": 0.003, "seed": 1},
                              {"sacrebleu_signature": "nrefs:1|case:mixed"}, step=60)
    accumulator = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    accumulator.Reload()
    content = accumulator.PluginTagToContent(metadata.PLUGIN_NAME)
    assert metadata.EXPERIMENT_TAG not in content  # TensorBoard builds the experiment from all the runs' sessions
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    assert start.hparams["model/attention"].string_value == "general"
    assert start.hparams["model.optimizer.lr"].number_value == 0.003 and start.hparams["seed"].number_value == 1
    end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
    assert end.status == 1  # STATUS_SUCCESS
    assert accumulator.Scalars("test/bleu")[-1].value == 24.5
    (text,) = accumulator.Tensors("sacrebleu_signature/text_summary")
    assert text.step == 60 and text.tensor_proto.string_val[0].decode() == "nrefs:1|case:mixed"


def test_mlflow_gets_heatmaps_and_tables_as_artifacts_and_final_values_as_metrics_and_tags(tmp_path):
    from lightning.pytorch.loggers import MLFlowLogger
    from matplotlib.figure import Figure
    from mlflow import MlflowClient

    from seq2seq_lit.utils.loggers import log_figure, log_summary, log_text_table

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    logger = MLFlowLogger(experiment_name="e", run_name="model/attention=dot", tracking_uri=uri, artifact_location=str(tmp_path / "artifacts"))
    fig = Figure()
    fig.add_subplot().imshow([[0.2, 0.8], [0.9, 0.1]])
    log_figure([logger], "val/attention/3", fig, step=50)
    log_text_table([logger], "val/translations", ("index", "source", "hypothesis"), [(0, "a b", "b a"), (1, "c", "c")], step=50)
    log_summary([logger], {"test/bleu": 24.5, "global_step": 60, "sacrebleu_signature": "nrefs:1|case:mixed", "best_model_path": None})

    client = MlflowClient(uri)
    run = client.get_run(logger.run_id)
    assert run.info.run_name == "model/attention=dot"
    assert run.data.metrics["test/bleu"] == 24.5 and run.data.metrics["global_step"] == 60
    assert run.data.tags["sacrebleu_signature"] == "nrefs:1|case:mixed" and "best_model_path" not in run.data.tags
    assert [f.path for f in client.list_artifacts(logger.run_id, "val/attention/3")] == ["val/attention/3/step0000050.png"]
    table = Path(client.download_artifacts(logger.run_id, "val/translations/step0000050.json", str(tmp_path / "download")))
    assert json.loads(table.read_text()) == {"columns": ["index", "source", "hypothesis"], "data": [[0, "a b", "b a"], [1, "c", "c"]]}

# ---- a finished sweep in the dashboards ----------------------------------------------------------------------------


def read_trials(sweep: Path) -> dict[str, dict]:
    """metrics.json of each trial of a ``model/attention=...`` sweep, by its attention."""
    trials = {}
    for metrics_file in sorted(sweep.glob("*/metrics.json")):
        overrides = (metrics_file.parent / ".hydra" / "overrides.yaml").read_text()
        attention = re.search(r"model/attention=(\w+)", overrides).group(1)
        trials[attention] = json.loads(metrics_file.read_text())
    return trials


def check_tensorboard(logdir: Path, trials: dict[str, dict], command: list[str], cwd: Path, tmp_path: Path, name: str) -> None:
    """TensorBoard over ``logdir``: every trial is a run named by its overrides, and an HPARAMS session with its
    attention and final BLEU, chrF and best validation BLEU (the plugin's HTTP routes); then a screenshot of the tab."""
    port = free_port()
    command = [*command, "--host", "127.0.0.1", "--port", str(port)]
    with server(command, f"http://127.0.0.1:{port}/data/runs", cwd, tmp_path / "tensorboard.log") as runs_url:
        base = f"http://127.0.0.1:{port}"
        runs = get_json(runs_url)
        for attention in trials:
            assert any(re.search(rf"^\d+/tensorboard/model\.attention={attention}(,|$)", run) for run in runs), runs
        experiment = post_json(f"{base}/data/plugin/hparams/experiment", {"experimentName": ""})
        assert {"model/attention", "model.encoder.hidden_size", "model.optimizer.lr"} <= {h["name"] for h in experiment["hparamInfos"]}
        assert set(TB_METRICS) <= {m["name"]["tag"] for m in experiment["metricInfos"]}
        request = {"experimentName": "", "startIndex": 0, "sliceSize": 100, "colParams": [],
                   "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]}
        groups = post_json(f"{base}/data/plugin/hparams/session_groups", request)["sessionGroups"]
        assert sorted(g["hparams"]["model/attention"] for g in groups) == sorted(trials)
        for group in groups:
            metrics = trials[group["hparams"]["model/attention"]]
            values = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
            for key in TB_METRICS:
                assert values[key] == pytest.approx(metrics[key], abs=1e-3), key
        png = screenshot(f"{base}/#hparams", tmp_path / f"{name}.png", tmp_path / "chromium-tb", size=(2200, 600))
    assert distinct_colours(png) > 50, "the HPARAMS tab's screenshot is blank"
    save_screenshot(png, os.environ.get("SEQ2SEQ_SCREENSHOT_DIR"))


def check_mlflow(experiment_name: str, trials: dict[str, dict], command: list[str], cwd: Path, tmp_path: Path, name: str) -> None:
    """``mlflow ui``: the sweep is one experiment whose runs are named by their overrides, with the resolved config
    as params, the final metrics, and heatmaps and translation tables as artifacts (the REST API); then a screenshot
    of the experiment's charts, the runs side by side."""
    port = free_port()
    command = [*command, "--host", "127.0.0.1", "--port", str(port)]
    with server(command, f"http://127.0.0.1:{port}/health", cwd, tmp_path / "mlflow.log") as _:
        api = f"http://127.0.0.1:{port}/api/2.0/mlflow"
        experiment = get_json(f"{api}/experiments/get-by-name?experiment_name={urllib.parse.quote(experiment_name)}")["experiment"]
        runs = post_json(f"{api}/runs/search", {"experiment_ids": [experiment["experiment_id"]], "max_results": 100})["runs"]
        assert len(runs) == len(trials)
        for run in runs:
            tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
            params = {p["key"]: p["value"] for p in run["data"]["params"]}
            metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
            attention = tags["attention"]
            assert tags["mlflow.runName"].startswith(f"model/attention={attention}")
            assert params["model/attention/_target_"].endswith(("GeneralAttention", "AdditiveAttention"))
            assert "model/encoder/hidden_size" in params and "data/batch_size" in params
            for key in ("test/bleu", "test/chrf", "val/bleu_best", "global_step"):
                assert metrics[key] == pytest.approx(trials[attention][key], abs=1e-3), key
            assert tags["sacrebleu_signature"] == trials[attention]["sacrebleu_signature"]
            run_id = run["info"]["run_id"]
            files = get_json(f"{api}/artifacts/list?run_id={run_id}&path=val/translations").get("files", [])
            assert files and files[-1]["path"].endswith(".json"), files
            heatmaps = get_json(f"{api}/artifacts/list?run_id={run_id}&path=val/attention").get("files", [])
            assert heatmaps, "no attention heatmaps among the artifacts"
        # The experiment's chart view: one chart per metric, a point per run, the runs listed by name beside them.
        page = f"http://127.0.0.1:{port}/#/experiments/{experiment['experiment_id']}/runs?compareRunsMode=CHART"
        png = screenshot(page, tmp_path / f"{name}.png", tmp_path / "chromium-mlflow", size=(1600, 1000))
    assert distinct_colours(png) > 50, "the MLflow screenshot is blank"
    save_screenshot(png, os.environ.get("SEQ2SEQ_SCREENSHOT_DIR"))


@pytest.fixture(scope="module")
def tiny_sweep(reverse_corpus, tmp_path_factory) -> Path:
    """A finished 2-trial sweep (``model/attention=general,additive``) of a tiny model on the reverse task, logged to
    TensorBoard and MLflow; returns the folder that holds ``sweep/`` and ``logs/mlflow``."""
    root = tmp_path_factory.mktemp("dashboards")
    result = run_module(
        "seq2seq_lit.train", "-m", f"model/attention={','.join(ATTENTIONS)}", *TINY, *reverse_data_overrides(reverse_corpus),
        "logger=[tensorboard,mlflow]", "trainer.max_steps=60",
        f"paths.log_dir={root}/logs", f"paths.cache_dir={root}/cache", f"hydra.sweep.dir={root}/sweep",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root


@pytest.mark.slow
def test_a_sweep_in_tensorboard_hparams_and_mlflow_ui(tiny_sweep, tmp_path):
    trials = read_trials(tiny_sweep / "sweep")
    assert sorted(trials) == sorted(ATTENTIONS)
    check_tensorboard(tiny_sweep / "sweep", trials, [str(BIN / "tensorboard"), "--logdir", "sweep"], tiny_sweep, tmp_path, "tensorboard-hparams-reverse")
    check_mlflow("train/sweep", trials, [str(BIN / "mlflow"), "ui", "--backend-store-uri", "sqlite:///logs/mlflow/mlflow.db"], tiny_sweep, tmp_path, "mlflow-runs-reverse")


def docs_commands(page: Path, heading: str) -> list[str]:
    """The commands of the first ```bash block after ``heading`` in ``page``, comments dropped."""
    text = page.read_text()
    block = text[text.index(heading) :].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]


@pytest.mark.slow
@pytest.mark.skipif(not (MULTI30K / "train.de").is_file(), reason="needs $SEQ2SEQ_DATA_DIR/multi30k (no download in tests)")
def test_the_sweep_commands_of_docs_tracking_run_as_written(tmp_path):
    """docs/tracking.md's sweep, compare, TensorBoard and MLflow commands, as written, from a fresh folder (the two
    servers get ``--host 127.0.0.1 --port <free port>`` added, so they cannot clash with one already running)."""
    sweep_cmd, compare_cmd, tensorboard_cmd, mlflow_cmd = docs_commands(REPO / "docs" / "tracking.md", "## Comparing a sweep")
    env = {**os.environ, "SEQ2SEQ_CACHE_DIR": str(tmp_path / "cache"), "WANDB_MODE": "offline"}

    def run(command: str) -> subprocess.CompletedProcess:
        argv = [str(BIN / word.removeprefix(".venv/bin/")) if i == 0 else word for i, word in enumerate(shlex.split(command))]
        return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)

    result = run(sweep_cmd)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "logs" / "train" / "multiruns" / "attention"
    trials = read_trials(sweep)
    assert sorted(trials) == sorted(ATTENTIONS)
    result = run(compare_cmd)
    assert result.returncode == 0, result.stderr[-3000:]
    for attention, metrics in trials.items():
        assert re.search(rf"│ \d+\s+│ {attention}\s+│\s+{metrics['test/bleu']:.2f} │", result.stdout), result.stdout

    def argv(command: str) -> list[str]:
        words = shlex.split(command)
        return [str(BIN / words[0].removeprefix(".venv/bin/")), *words[1:]]

    check_tensorboard(sweep, trials, argv(tensorboard_cmd), tmp_path, tmp_path, "tensorboard-hparams")
    check_mlflow("train/attention", trials, argv(mlflow_cmd), tmp_path, tmp_path, "mlflow-runs")
