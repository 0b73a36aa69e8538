"""s2s-compare on hand-made run folders."""

import json

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
