"""docs/seed-claims.md: its commands compose as written, each reads what an earlier one writes, and its tables say what
the committed results (docs/seed-claims/) hold.

The page's runs take about 30 minutes each on 2 cores, so they are not run here (the tools themselves are tested in
test_grouped_corpus, test_gradients, test_evaluate, test_translate, test_align and test_compare); the tutorial
notebook's chapter that plots the committed results runs in test_notebook.
"""

from __future__ import annotations

import csv
import json
import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

from seq2seq_lit.utils.entry import CONFIG_MODULE

from .conftest import REPO, compose_train

PAGE = REPO / "docs" / "seed-claims.md"
RESULTS = REPO / "docs" / "seed-claims"
CONFIGS = {
    "seq2seq_lit.train": "train.yaml", "seq2seq_lit.evaluate": "evaluate.yaml", "seq2seq_lit.gradients": "gradients.yaml",
    "seq2seq_lit.translate": "translate.yaml", "seq2seq_lit.align": "align.yaml",
}


def documented_commands() -> list[list[str]]:
    """The words of every ``python -m seq2seq_lit.*`` line in the page's code blocks, continuation lines joined."""
    found, in_block, pending = [], False, ""
    for line in PAGE.read_text().splitlines():
        if line.startswith("```"):
            in_block = not in_block
            continue
        if not in_block:
            continue
        pending += line.rstrip().removesuffix("\\") + " "
        if line.rstrip().endswith("\\"):
            continue
        if "-m seq2seq_lit." in pending:
            found.append(shlex.split(pending, comments=True))
        pending = ""
    return found


def _module_and_overrides(words: list[str]) -> tuple[str, list[str]]:
    program = words.index("-m") + 1
    return words[program], words[program + 1 :]


def _value(overrides: list[str], key: str) -> str | None:
    return next((o.split("=", 1)[1] for o in overrides if o.startswith(f"{key}=")), None)


def _compose(module: str, overrides: list[str], tmp_path: Path):
    """The config the command composes; the tools that write no run folder (translate, align) have no ``paths``."""
    if module in ("seq2seq_lit.translate", "seq2seq_lit.align"):
        GlobalHydra.instance().clear()
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            return compose(config_name=CONFIGS[module], overrides=overrides)
    return compose_train(overrides, tmp_path / "run", config_name=CONFIGS[module])


def test_every_command_composes_and_reads_what_an_earlier_one_writes(tmp_path):
    commands = documented_commands()
    modules = [_module_and_overrides(words)[0] for words in commands]
    assert modules.count("seq2seq_lit.train") == 7 and modules.count("seq2seq_lit.evaluate") == 9
    assert modules.count("seq2seq_lit.gradients") == 4 and "seq2seq_lit.align" in modules
    checkpoints: set[str] = set()  # what the training commands write
    written: set[str] = set()  # the folders every command writes into
    for words in commands:
        module, overrides = _module_and_overrides(words)
        if module == "seq2seq_lit.compare":
            folders = [w for w in overrides if not w.startswith("-") and "/" in w and not w.endswith(".png")]
            assert folders and all(f in written for f in folders), f"compare reads a folder nothing wrote: {words}"
            continue
        run_dir = _value(overrides, "hydra.run.dir")
        hydra_free = [o for o in overrides if not o.startswith("hydra.")]
        cfg = _compose(module, hydra_free, tmp_path)
        for key in ("input", "src", "tgt", "gold"):  # the page's inputs are files of the checkout
            if value := _value(overrides, key):
                assert (REPO / value).is_file(), f"{module} reads {value}, which is not in the checkout"
        ckpt = _value(overrides, "ckpt_path")
        if ckpt == "last":  # a training run continued in its own folder
            assert any(c.startswith(f"{run_dir}/checkpoints/") for c in checkpoints), f"nothing to resume in {run_dir}"
        elif ckpt:
            assert ckpt in checkpoints, f"{module} reads {ckpt}, which no training command of the page writes"
        if module == "seq2seq_lit.train":
            if every := cfg.trainer.get("val_check_interval"):  # every validation's checkpoint is kept
                assert cfg.callbacks.model_checkpoint.save_top_k == -1
                steps = range(every, cfg.trainer.max_steps + 1, every)
            else:  # the best by val/bleu, of which the last step's validation (ValidateOnLastStep) is one
                steps = [cfg.trainer.max_steps]
            checkpoints |= {f"{run_dir}/checkpoints/step{s:06d}.ckpt" for s in steps}
        if "data=multi30k_long" in overrides or "experiment=long_sentences" in overrides:
            assert cfg.data.corpus._target_ == "seq2seq_lit.data.grouped.multi30k_long"
        for key in ("hydra.run.dir", "output_dir", "attention_dir"):
            if value := _value(overrides, key):
                written.add(str(Path(value).parent))
                written.add(value)
    assert len(checkpoints) >= 9


def _table(heading: str) -> list[list[str]]:
    """The cells of the first markdown table after ``heading`` on the page."""
    lines = PAGE.read_text().split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows[2:]


def test_the_length_table_shows_the_committed_results():
    results = json.loads((RESULTS / "bleu-by-length.json").read_text())
    rows = _table("### BLEU by source length")
    assert len(rows) == sum(len(runs) for runs in results.values()) >= 6
    for row in rows:
        model, steps = re.fullmatch(r"`(\w+)`, ([\d,]+)", row[0]).groups()
        run = results[model][steps.replace(",", "")]
        buckets = [f"{b['bleu']:.1f}" for b in run["bleu_by_source_length"].values()]
        assert row[1 : 1 + len(buckets)] == buckets, f"the table's {model} at {steps} differs from bleu-by-length.json"
        assert row[1 + len(buckets)] == f"{run['bleu']:.1f}"


@pytest.mark.parametrize("name", ["none-init", "none-trained", "general-init", "general-trained"])
def test_the_gradient_tables_are_committed(name):
    with open(RESULTS / "gradients" / f"{name}.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["offset"]) for r in rows[:3]] == [0, 1, 2] and float(rows[0]["from_end"]) > 0
