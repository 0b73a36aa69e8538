"""Data-parallel training: sharded bucketed batches, and DDP validation BLEU equal to one process' BLEU."""

from __future__ import annotations

import csv
import json
import os
import random
from pathlib import Path

import pytest
import torch

from seq2seq_lit.data import BucketBatchSampler
from seq2seq_lit.data.batching import TranslationDataset
from seq2seq_lit.data.datamodule import ResumableDataLoader, eval_dataloader, make_dataloader

from .conftest import TINY, run_module, write_reverse_corpus


def lengths_of(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(1, 30) for _ in range(n)]


@pytest.mark.parametrize("num_replicas", [2, 3])
@pytest.mark.parametrize("n", [101, 5, 0])
def test_evaluation_shards_cover_every_sentence_exactly_once(num_replicas, n):
    lengths = lengths_of(n)
    shards = [BucketBatchSampler(lengths, 8, shuffle=False, num_replicas=num_replicas, rank=r) for r in range(num_replicas)]
    seen = [i for shard in shards for batch in shard for i in batch]
    assert sorted(seen) == list(range(n))  # no sentence missing, none repeated (no padding as DistributedSampler)
    assert [len(shard) for shard in shards] == [len(list(iter(shard))) for shard in shards]
    sizes = [sum(map(len, shard.batches(0))) for shard in shards]
    assert max(sizes) - min(sizes) <= 1
    for shard in shards:  # still sorted by length within each process: little padding
        order = [lengths[i] for batch in shard.batches(0) for i in batch]
        assert order == sorted(order)


@pytest.mark.parametrize("num_replicas", [2, 3])
def test_training_shards_are_disjoint_equal_in_number_and_change_every_epoch(num_replicas):
    lengths = lengths_of(500)
    shards = [BucketBatchSampler(lengths, 16, seed=7, bucket_factor=4, num_replicas=num_replicas, rank=r) for r in range(num_replicas)]
    single = BucketBatchSampler(lengths, 16, seed=7, bucket_factor=4)
    for epoch in (0, 1):
        per_rank = [shard.batches(epoch) for shard in shards]
        counts = {len(b) for b in per_rank}
        assert counts == {len(single) // num_replicas} == {len(shards[0])}  # same steps on every process: no hang
        flat = [i for batches in per_rank for batch in batches for i in batch]
        assert len(flat) == len(set(flat))  # no sentence on two processes
        global_batches = single.batches(epoch)
        assert [b for batches in zip(*per_rank) for b in batches] == global_batches[: len(per_rank[0]) * num_replicas]
    assert shards[0].batches(0) != shards[0].batches(1)


def test_a_training_shard_resumes_mid_epoch():
    lengths = lengths_of(300)
    dataset = TranslationDataset([[5] * n for n in lengths], [[6] * n for n in lengths])

    def loader():
        sampler = BucketBatchSampler(dataset.lengths, 8, seed=3, bucket_factor=2, num_replicas=2, rank=1)
        return make_dataloader(dataset, sampler, loader_cls=ResumableDataLoader, generator=torch.Generator().manual_seed(0))

    first = loader()
    it = iter(first)
    seen = [next(it).indices.tolist() for _ in range(5)]
    state = first.state_dict()
    resumed = loader()
    resumed.load_state_dict(state)
    rest = [b.indices.tolist() for b in resumed]
    assert seen + rest == [b.indices.tolist() for b in loader()]


def test_eval_dataloader_shards_by_rank():
    lengths = lengths_of(11)
    dataset = TranslationDataset([[5] * n for n in lengths], [[6] * n for n in lengths])
    indices = [sorted(i for b in eval_dataloader(dataset, 4, num_replicas=2, rank=r) for i in b.indices.tolist()) for r in (0, 1)]
    assert sorted(indices[0] + indices[1]) == list(range(11)) and not set(indices[0]) & set(indices[1])


@pytest.fixture(scope="module")
def odd_corpus(tmp_path_factory) -> dict[str, Path]:
    """The reverse task with 101 validation sentences: split over 2 processes, a padding sampler would repeat one."""
    return write_reverse_corpus(tmp_path_factory.mktemp("odd"), {"train": 3000, "val": 101, "test": 51}, seed=1)



@pytest.mark.slow
def test_ddp_on_two_cpu_processes_validates_like_one_process(odd_corpus, tmp_path):
    data = ["data=parallel_text", "data.tokenizer.vocab_size=24", "data.batch_size=32", "data.eval_batch_size=16"]
    data += [f"data.{key}={path}" for key, path in odd_corpus.items()]
    run_dir = tmp_path / "ddp"
    paths = [f"paths.log_dir={tmp_path}/logs", f"paths.cache_dir={tmp_path}/cache", f"hydra.run.dir={run_dir}"]
    ddp = ["trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu"]
    result = run_module(
        "seq2seq_lit.train", *TINY, *data, *ddp, *paths, "logger=csv", "trainer.max_steps=120", "callbacks.attention_heatmaps=null"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["global_step"] == 120
    rows = list(csv.DictReader(open(run_dir / "csv" / "version_0" / "metrics.csv")))
    val = [r for r in rows if r.get("val/bleu")]
    # An epoch is 94 batches of 32 over both processes, 47 on each: validation after each epoch and at max_steps.
    assert [int(r["step"]) for r in val] == [46, 93, 119]
    best = max(val, key=lambda r: float(r["val/bleu"]))  # the validation of the best checkpoint
    ddp_bleu, ddp_chrf = float(best["val/bleu"]), float(best["val/chrf"])
    assert ddp_bleu == pytest.approx(metrics["val/bleu_best"], abs=1e-3)
    assert 5.0 < ddp_bleu < 100.0  # learned something, so that a missing or repeated sentence would show

    # One process, the same checkpoint, the whole validation split.
    evaluated = run_module(
        "seq2seq_lit.evaluate", f"ckpt_path={metrics['best_model_path']}", "data=parallel_text",
        f"data.val_src={odd_corpus['val_src']}", f"data.val_tgt={odd_corpus['val_tgt']}", "data.split=val",
        f"output_dir={tmp_path}/eval", f"paths.log_dir={tmp_path}/logs",
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    single = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert single["sentences"] == 101
    assert ddp_bleu == pytest.approx(single["bleu"], abs=1e-4)
    assert ddp_chrf == pytest.approx(single["chrf"], abs=1e-4)


def test_slurm_launcher_asks_for_one_task_per_device_on_each_node(tmp_path, monkeypatch):
    """hydra/launcher=slurm: the sbatch script that submitit would submit (no cluster here: a stand-in srun, and the
    submission itself is captured)."""
    import hydra
    import submitit
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from .conftest import CONF_DIR

    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    submitted = {}
    monkeypatch.setattr(submitit.AutoExecutor, "map_array", lambda self, fn, *args: submitted.update(executor=self, args=args) or [])

    GlobalHydra.instance().clear()
    overrides = ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2",
                 f"hydra.sweep.dir={tmp_path}/sweep", "hydra.launcher.partition=gpu"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train.yaml", overrides=overrides, return_hydra_config=True)
    launcher = hydra.utils.instantiate(cfg.hydra.launcher)
    launcher.config = cfg
    assert launcher.launch([["model/attention=dot"], ["model/attention=additive"]], initial_job_idx=0) == []
    script = submitted["executor"]._executor._make_submission_file_text("python -m seq2seq_lit.train", "uid")
    for line in ("--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4", "--partition=gpu", "--time=240", "--signal=USR2@120"):
        assert f"#SBATCH {line}\n" in script, line
    assert [overrides for overrides in submitted["args"][0]] == [["model/attention=dot"], ["model/attention=additive"]]


def test_data_module_shards_for_the_trainer_and_refuses_lightnings_sampler_replacement(reverse_corpus, tmp_path):
    from types import SimpleNamespace

    from seq2seq_lit.data import TranslationDataModule
    from seq2seq_lit.errors import ConfigError

    datamodule = TranslationDataModule.from_files(
        **reverse_corpus, tokenizer={"vocab_size": 24, "cache_dir": str(tmp_path / "sp")}, batch_size=32, eval_batch_size=16
    )
    datamodule.setup("fit")

    def trainer(rank, use_distributed_sampler=False):
        connector = SimpleNamespace(use_distributed_sampler=use_distributed_sampler)
        return SimpleNamespace(world_size=2, global_rank=rank, _accelerator_connector=connector)

    val, train = {}, {}
    for rank in (0, 1):
        datamodule.trainer = trainer(rank)
        val[rank] = [i for batch in datamodule.val_dataloader() for i in batch.indices.tolist()]
        train[rank] = datamodule.train_dataloader().batch_sampler.batches(0)
    assert sorted(val[0] + val[1]) == list(range(100)) and len(val[0]) == len(val[1]) == 50
    assert len(train[0]) == len(train[1]) == 94 // 2
    assert not {i for b in train[0] for i in b} & {i for b in train[1] for i in b}

    datamodule.trainer = trainer(0, use_distributed_sampler=True)
    with pytest.raises(ConfigError, match="use_distributed_sampler=false"):
        datamodule.val_dataloader()


def _resume_state_key(checkpoint: dict) -> str:
    return next(key for key in checkpoint["callbacks"] if key.startswith("ResumeCheckpoint"))


@pytest.mark.slow
def test_ddp_run_with_dropout_and_sampling_resumed_mid_epoch_ends_with_the_weights_of_the_uninterrupted_run(odd_corpus, tmp_path):
    """Each process resumes its own shard of the epoch where it stopped (the loader state of rank zero, which every
    rank shares since all take the same number of steps) and its own random stream (dropout 0.2, scheduled-sampling
    coins); the control resumes every rank from rank 0's stream, and ends elsewhere."""
    data = ["data=parallel_text", "data.tokenizer.vocab_size=24", "data.batch_size=32", "data.eval_batch_size=51"]
    data += [f"data.{key}={path}" for key, path in odd_corpus.items()]
    random_training = ["model.dropout=0.2", "model/teacher_forcing=inverse_sigmoid", "model.teacher_forcing.k=20",
                       "trainer.deterministic=true"]  # teacher-forcing ratio 0.95 at step 0, 0.5 at step 60
    tiny = [a for a in TINY if not a.startswith("model.dropout=")]
    common = [*tiny, *random_training, *data, "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu",
              "logger=csv", "test=false", "trainer.max_steps=60", "callbacks.attention_heatmaps=null",
              "callbacks.sample_translations=null", f"paths.log_dir={tmp_path}/logs", f"paths.cache_dir={tmp_path}/cache"]
    steps = tmp_path / "steps"
    every_30 = f"+callbacks.every_30={{_target_:lightning.pytorch.callbacks.ModelCheckpoint,every_n_train_steps:30,save_top_k:-1,dirpath:{steps},filename:'s{{step}}'}}"
    result = run_module("seq2seq_lit.train", *common, every_30, f"hydra.run.dir={tmp_path}/whole")
    assert result.returncode == 0, result.stderr[-3000:]
    mid_epoch = tmp_path / "step30.ckpt"  # an epoch is 47 steps per process
    (steps / "sstep=30.ckpt").rename(mid_epoch)

    checkpoint = torch.load(mid_epoch, weights_only=True)
    rng = checkpoint["callbacks"][_resume_state_key(checkpoint)]["rng"]
    assert len(rng) == 2 and not torch.equal(rng[0]["torch"], rng[1]["torch"])  # one state per rank
    rng[1] = rng[0]
    rank0_everywhere = tmp_path / "step30_rank0_state_everywhere.ckpt"
    torch.save(checkpoint, rank0_everywhere)

    def resumed_weights(ckpt: Path, name: str) -> dict[str, torch.Tensor]:
        result = run_module("seq2seq_lit.train", *common, f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path}/{name}")
        assert result.returncode == 0, result.stderr[-3000:]
        resumed = torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=True)
        assert resumed["global_step"] == 60
        return resumed["state_dict"]

    whole = torch.load(tmp_path / "whole" / "checkpoints" / "last.ckpt", weights_only=True)
    assert whole["global_step"] == 60
    resumed = resumed_weights(mid_epoch, "resumed")
    for key, value in whole["state_dict"].items():
        assert torch.equal(value, resumed[key]), key
    control = resumed_weights(rank0_everywhere, "control")
    assert not all(torch.equal(value, control[key]) for key, value in whole["state_dict"].items())

    # Another number of processes cannot continue the two streams and shards: refused before any step.
    one_process = [a for a in common if not a.startswith("trainer=ddp") and a != "trainer.devices=2"]
    result = run_module("seq2seq_lit.train", *one_process, f"ckpt_path={mid_epoch}", f"hydra.run.dir={tmp_path}/one")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "the checkpoint was written by 2 training process(es), this run has 1" in result.stderr
    assert "trainer.devices and trainer.num_nodes" in result.stderr
