"""Experiment tracking: what an offline W&B run holds (config, tags, scalars, images, the translations table, the
summary), and the same tables in TensorBoard and CSV."""

from __future__ import annotations

import csv
import json
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict, read_write

from seq2seq_lit.utils.loggers import run_group_from_hydra, run_tags_from_hydra

from .conftest import CONF_DIR


def wandb_records(run_file: Path) -> Iterator:
    """The protobuf records of an offline W&B run file (``run-*.wandb``), which wandb itself no longer reads back in
    Python: a LevelDB-style log (a 7-byte header ``:W&B`` + magic + version, then 32 KiB blocks of chunks, each with
    a 7-byte header: CRC32, length, type FULL=1 / FIRST=2 / MIDDLE=3 / LAST=4) of ``wandb_internal_pb2.Record``."""
    from wandb.proto import wandb_internal_pb2

    data = run_file.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, pending = 32768, 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending + chunk)
            pending = b""
            yield record
        else:
            pending = (pending if kind == 3 else b"") + chunk


def read_offline_run(run_dir: Path) -> dict:
    """History rows, final summary, config and run record (name, group, tags) of an offline W&B run folder."""
    history, summary, config, run = [], {}, {}, None
    for record in wandb_records(next(run_dir.glob("run-*.wandb"))):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item})
        elif kind == "summary":
            summary.update({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.summary.update})
        elif kind == "config":
            config.update({item.key: json.loads(item.value_json) for item in record.config.update})
        elif kind == "run":
            run = record.run
            config.update({item.key: json.loads(item.value_json) for item in record.run.config.update})
    return {"history": history, "summary": summary, "config": config, "run": run}


@pytest.fixture(scope="module")
def offline_run(trained_reverse_run) -> tuple[Path, dict]:
    cfg, _ = trained_reverse_run
    (run_dir,) = Path(cfg.paths.output_dir).glob("wandb/offline-run-*")
    return run_dir, read_offline_run(run_dir)


def test_wandb_config_is_the_resolved_hydra_config_with_overrides_name_and_tags(trained_reverse_run, offline_run):
    cfg, _ = trained_reverse_run
    _, run = offline_run
    config = run["config"]
    assert config["model"]["encoder"]["hidden_size"] == 32 and config["data"]["seed"] == cfg.seed  # resolved
    assert "model.embedding_size=32" in config["hydra_overrides"] and "logger=many" in config["hydra_overrides"]
    assert run["run"].display_name.startswith("model.embedding_size=32,")
    assert {"dev", "attention:general", "decoder:luong", "teacher_forcing:constant"} <= set(run["run"].tags)


def test_wandb_history_holds_scalars_images_and_translation_tables(trained_reverse_run, offline_run):
    cfg, metrics = trained_reverse_run
    run_dir, run = offline_run
    history = run["history"]
    val_rows = [row for row in history if "val/bleu" in row]
    assert len(val_rows) == 3
    for key in ("val/loss", "val/ppl", "val/chrf", "val/bleu_best"):
        assert all(key in row for row in val_rows), key
    assert max(row["val/bleu"] for row in val_rows) == pytest.approx(metrics["val/bleu_best"], abs=1e-3)
    assert any("train/loss" in row for row in history) and any("test/bleu" in row for row in history)

    image_rows = [row for row in history if any(k.startswith("val/attention/") for k in row)]
    assert len(image_rows) == 3 * 3  # three sentences, three validations
    for row in image_rows:
        for filename in next(v for k, v in row.items() if k.endswith("/filenames")):
            assert (run_dir / "files" / filename).is_file()

    tables = [row for row in history if "val/translations/path" in row]
    assert len(tables) == 3 and all(row["val/translations/nrows"] == 5 for row in tables)
    table = json.loads((run_dir / "files" / tables[-1]["val/translations/path"]).read_text())
    assert table["columns"] == ["index", "source", "reference", "hypothesis"]
    sources = Path(cfg.data.val_src).read_text().splitlines()
    references = Path(cfg.data.val_tgt).read_text().splitlines()
    assert [row[:3] for row in table["data"]] == [[i, sources[i], references[i]] for i in range(5)]
    assert sum(row[3] == row[2] for row in table["data"]) >= 4  # the trained model reverses them


def test_wandb_summary_holds_the_final_test_metrics_and_the_sacrebleu_signature(trained_reverse_run, offline_run):
    _, metrics = trained_reverse_run
    summary = offline_run[1]["summary"]
    for key in ("test/bleu", "test/chrf", "val/bleu_best", "global_step"):
        assert summary[key] == pytest.approx(metrics[key], abs=1e-3), key
    assert summary["sacrebleu_signature"] == metrics["sacrebleu_signature"]
    assert summary["sacrebleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert summary["best_model_path"] == metrics["best_model_path"]


def test_tensorboard_and_csv_get_the_translation_tables(trained_reverse_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg, _ = trained_reverse_run
    out = Path(cfg.paths.output_dir)
    texts = []
    for events in sorted((out / "tensorboard").rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"tensors": 0})
        accumulator.Reload()
        if "val/translations/text_summary" in accumulator.Tags()["tensors"]:
            texts += [e.tensor_proto.string_val[0].decode() for e in accumulator.Tensors("val/translations/text_summary")]
    assert len(texts) == 3 and texts[0].startswith("| index | source | reference | hypothesis |")
    assert len(texts[-1].splitlines()) == 2 + 5

    files = sorted((out / "csv" / "version_0" / "tables").glob("val_translations_step*.tsv"))
    assert len(files) == 3
    rows = list(csv.reader(files[-1].open(encoding="utf-8"), delimiter="\t"))
    assert rows[0] == ["index", "source", "reference", "hypothesis"] and len(rows) == 6
    assert rows[1][1] == Path(cfg.data.val_src).read_text().splitlines()[0]


def test_a_multirun_job_is_grouped_by_its_sweep_and_tagged_by_its_choices(tmp_path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train.yaml", overrides=["experiment=luong2015", "model/decoder=bahdanau"], return_hydra_config=True)
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.mode = "MULTIRUN"
        cfg.hydra.sweep.dir = str(tmp_path / "multiruns" / "2026-11-21_10-00-00")
        cfg.hydra.job.name = "train"
    HydraConfig().set_config(cfg)
    assert run_group_from_hydra() == "train/2026-11-21_10-00-00"
    tags = run_tags_from_hydra(["luong2015"])
    assert tags[0] == "luong2015" and {"experiment:luong2015", "attention:local_p", "decoder:bahdanau"} <= set(tags)
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.mode = "RUN"
    HydraConfig().set_config(cfg)
    assert run_group_from_hydra() == "luong2015"
