"""s2s-compare on hand-made run folders."""

import json
import os
from pathlib import Path

import pytest

from seq2seq_lit.compare import find_runs, main


def make_run(folder, overrides, metrics):
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_compare_tabulates_differing_overrides_and_metrics(tmp_path, capsys):
    make_run(tmp_path / "0", ["model/attention=general", "trainer.max_steps=600"], {"test/bleu": 24.91, "global_step": 600})
    make_run(tmp_path / "1", ["model/attention=additive", "trainer.max_steps=600"], {"test/bleu": 23.5, "global_step": 600})
    make_run(tmp_path / "2", ["trainer.max_steps=600", "+trainer.profiler=simple"], {"global_step": 600})
    (tmp_path / "not_a_run").mkdir()
    runs = find_runs([tmp_path])
    assert [r.path.name for r in runs] == ["0", "1", "2"]

    plot = tmp_path / "bleu.png"
    assert main([str(tmp_path), "--metrics", "test/bleu,global_step", "--plot", str(plot), "--label", "model/attention"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "model/attention" in line)
    assert "trainer.profiler" in header and "trainer.max_steps" not in header  # same in every run
    rows = {line.split()[1]: line for line in out.splitlines() if line.startswith("│")}
    assert "general" in rows["0"] and "24.91" in rows["0"] and "600" in rows["0"]
    assert "additive" in rows["1"] and "23.50" in rows["1"]
    assert "default" in rows["2"] and "simple" in rows["2"] and "-" in rows["2"]
    assert plot.stat().st_size > 0


def table_rows(out: str) -> dict[str, list[str]]:
    """Cells of each row of a printed rich table, by the first cell (the run)."""
    rows = [[cell.strip() for cell in line.strip("│").split("│")] for line in out.splitlines() if line.startswith("│")]
    return {row[0]: row for row in rows}


def table_header(out: str) -> list[str]:
    line = next(line for line in out.splitlines() if line.startswith("┃"))
    return [cell.strip() for cell in line.strip("┃").split("┃")]



def test_compare_of_two_multiruns_names_each_row_by_its_run_folder(tmp_path, capsys):
    first, second = tmp_path / "multiruns" / "2026-11-21_10-00-00", tmp_path / "multiruns" / "2026-11-21_11-30-00"
    for sweep, steps in ((first, 600), (second, 900)):
        make_run(sweep / "0", ["model/attention=general", f"trainer.max_steps={steps}"], {"test/bleu": 20.0 + steps / 100})
        make_run(sweep / "1", ["model/attention=additive", f"trainer.max_steps={steps}"], {"test/bleu": 10.0 + steps / 100})
    assert main([str(first), str(second), "--metrics", "test/bleu"]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert rows == {
        "2026-11-21_10-00-00/0": ["2026-11-21_10-00-00/0", "general", "600", "26.00"],
        "2026-11-21_10-00-00/1": ["2026-11-21_10-00-00/1", "additive", "600", "16.00"],
        "2026-11-21_11-30-00/0": ["2026-11-21_11-30-00/0", "general", "900", "29.00"],
        "2026-11-21_11-30-00/1": ["2026-11-21_11-30-00/1", "additive", "900", "19.00"],
    }
    # One multirun alone keeps the short names; one run alone, its folder's name.
    assert [run.name for run in find_runs([first])] == ["0", "1"]
    assert [run.name for run in find_runs([first / "1"])] == ["1"]

@pytest.mark.slow
def test_compare_three_small_runs_of_a_multirun(reverse_corpus, tmp_path, capsys):
    import subprocess
    import sys

    from .conftest import TINY, reverse_data_overrides

    repo = Path(__file__).resolve().parents[1]
    sweep = tmp_path / "multirun"
    args = [
        "-m", "model/attention=dot,general,additive", *TINY, *reverse_data_overrides(reverse_corpus), "logger=many",
        "trainer.max_steps=30", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
        "callbacks.attention_heatmaps=null", f"paths.log_dir={tmp_path}/logs", f"paths.cache_dir={tmp_path}/cache",
        f"hydra.sweep.dir={sweep}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "seq2seq_lit.train", *args], capture_output=True, text=True, cwd=repo, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = {i: json.loads((sweep / str(i) / "metrics.json").read_text()) for i in range(3)}

    assert main([str(sweep), "--metrics", "test/bleu,val/bleu_best,global_step"]) == 0
    out = capsys.readouterr().out
    assert table_header(out) == ["run", "model/attention", "test/bleu", "val/bleu_best", "global_step"]
    rows = table_rows(out)
    assert sorted(rows) == ["0", "1", "2"]
    for i, attention in enumerate(["dot", "general", "additive"]):
        assert rows[str(i)] == [str(i), attention, f"{metrics[i]['test/bleu']:.2f}", f"{metrics[i]['val/bleu_best']:.2f}", "30"]

    # Each job is its own W&B run (offline here), grouped by the multirun and named by its overrides.
    from .test_tracking import read_offline_run

    wandb_runs = [read_offline_run(next((sweep / str(i)).glob("wandb/offline-run-*")))["run"] for i in range(3)]
    assert {run.run_group for run in wandb_runs} == {"train/multirun"}
    assert [run.display_name.split(",")[0] for run in wandb_runs] == [f"model/attention={a}" for a in ("dot", "general", "additive")]
    assert len({run.run_id for run in wandb_runs}) == 3

    # A run without metrics.json (e.g. interrupted) is read from its CSV log: the last value of each column.
    (sweep / "1" / "metrics.json").unlink()
    assert main([str(sweep), "--metrics", "test/bleu,val/bleu_best,global_step"]) == 0
    row = table_rows(capsys.readouterr().out)["1"]
    assert row == ["1", "general", f"{metrics[1]['test/bleu']:.2f}", f"{metrics[1]['val/bleu_best']:.2f}", "30"]


class FakeSummary(dict):
    """wandb's HTTPSummary keeps its values in ``_json_dict``."""

    @property
    def _json_dict(self):
        return dict(self)


class FakeRun:
    def __init__(self, run_id, config, summary):
        self.id, self.config, self.summary = run_id, config, FakeSummary(summary)
        self.path = ["team", "seq2seq-lit", run_id]


class FakeApi:
    """Stands in for ``wandb.Api``: records the query, returns three runs."""

    calls: list = []

    def runs(self, path, filters=None, order=None):
        FakeApi.calls.append((path, filters, order))
        return [
            FakeRun("a1", {"hydra_overrides": ["model/attention=dot", "trainer.max_steps=600"], "model": {"dropout": 0.2}},
                    {"test/bleu": 28.02, "val/bleu_best": 26.3, "global_step": 600, "_runtime": 5, "val/translations": {"_type": "table-file"}}),
            FakeRun("b2", {"hydra_overrides": ["model/attention=general", "trainer.max_steps=600"]},
                    {"test/bleu": 24.91, "val/bleu_best": 23.87, "global_step": 600}),
            FakeRun("c3", {"hydra_overrides": ["trainer.max_steps=600", "model/decoder=bahdanau"]},
                    {"test/bleu": 20.5, "global_step": 600}),
        ]


def test_compare_reads_a_wandb_project_through_the_public_api(monkeypatch, tmp_path, capsys):
    import wandb

    FakeApi.calls = []
    monkeypatch.setattr(wandb, "Api", FakeApi)
    plot = tmp_path / "bleu.png"
    argv = ["wandb://team/seq2seq-lit", "--metrics", "test/bleu,val/bleu_best,global_step", "--filters", '{"group": "g"}',
            "--plot", str(plot), "--label", "model/attention"]
    assert main(argv) == 0
    assert FakeApi.calls == [("team/seq2seq-lit", {"group": "g"}, "+created_at")]
    out = capsys.readouterr().out
    assert table_header(out) == ["run", "model/attention", "model/decoder", "test/bleu", "val/bleu_best", "global_step"]
    rows = table_rows(out)
    assert rows["a1"] == ["a1", "dot", "default", "28.02", "26.30", "600"]
    assert rows["b2"] == ["b2", "general", "default", "24.91", "23.87", "600"]
    assert rows["c3"] == ["c3", "default", "bahdanau", "20.50", "-", "600"]
    assert plot.stat().st_size > 0


def test_compare_wandb_without_access_says_how_to_fix_it(monkeypatch, capsys):
    import pytest
    import wandb

    class NoAccess:
        def runs(self, *args, **kwargs):
            raise RuntimeError("api_key not configured (no-tty)")

    monkeypatch.setattr(wandb, "Api", NoAccess)
    with pytest.raises(SystemExit) as exit_info:
        main(["wandb://team/seq2seq-lit"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "wandb login" in err and "wandb sync" in err and "Traceback" not in err


def test_plot_length_into_a_missing_folder_is_refused_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path), "--plot-length", str(tmp_path / "missing" / "plot.png")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--plot-length=" in err and "does not exist" in err and "mkdir -p" in err
