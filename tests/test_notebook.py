"""The tutorial notebook runs top to bottom as written (on a CPU, no network), so that it cannot rot."""

from __future__ import annotations

import os

import pytest

from .conftest import REPO

nbclient = pytest.importorskip("nbclient", reason="the dev extra installs nbclient, nbformat and ipykernel")
nbformat = pytest.importorskip("nbformat")

NOTEBOOK = REPO / "notebooks" / "attention_tutorial.ipynb"


@pytest.mark.slow  # trains two small models: a few minutes
def test_the_attention_tutorial_runs_top_to_bottom(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), "commit it without outputs"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    client = nbclient.NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    try:
        client.execute()  # raises CellExecutionError, with the cell and its traceback, if a cell fails
    finally:
        nbformat.write(notebook, tmp_path / "executed.ipynb")  # to look at after a failure
    outputs = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs)
    assert "attention weights" in outputs and "general: val BLEU" in outputs and "location   val BLEU" in outputs
    images = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs if "image/png" in o.get("data", {})]
    # chapter 8 loads the committed results of docs/seed-claims.md: every model at both budgets, every gradient table
    assert all(f"{model}, {steps} updates" in outputs for model in ("none", "general", "additive") for steps in (1200, 2400, 4800))
    assert outputs.count("gradient at EOS") == 4
    assert len(images) >= 5  # two maps of the general model, one of the location model, the two seed-claim plots
    assert os.listdir(cwd) == []  # it wrote nothing where it ran (its files go to a temporary folder)
    print(outputs.strip().splitlines()[-1])  # "notebook ran in N s"
