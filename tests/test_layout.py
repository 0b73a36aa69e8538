"""The layout the design card names: configs in the top-level ``conf/`` (the package ``seq2seq_lit.conf``), one room
per concern, entry points that nothing in the package imports."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import tomllib

import seq2seq_lit

from .conftest import REPO

PACKAGE = REPO / "seq2seq_lit"
SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
ENTRY_MODULES = {target.split(":")[0] for target in SCRIPTS.values()}


def test_the_top_level_holds_the_design_cards_folders():
    for name in ("pyproject.toml", "README.md", "conf", "seq2seq_lit", "tests", "sweeps"):
        assert (REPO / name).exists(), name
    assert not (PACKAGE / "conf").exists(), "configs live in the top-level conf/, shipped as seq2seq_lit.conf"
    assert (REPO / "conf" / "__init__.py").is_file(), "without it Hydra says 'Primary config module ... not found'"


def test_every_room_says_in_its_docstring_what_it_holds():
    for init in sorted(PACKAGE.rglob("__init__.py")):
        if init.parent == PACKAGE:
            continue
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and doc.strip(), f"{init.relative_to(REPO)} has no docstring saying what the folder holds"


def _imported_modules(path: Path) -> set[str]:
    """The absolute names of the package's modules that ``path`` imports (relative imports resolved)."""
    module = ".".join(path.relative_to(REPO).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module.removesuffix(".__init__")
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.startswith("seq2seq_lit")}


def test_no_module_of_the_package_imports_an_entry_point():
    """Entry points (``s2s-*``) parse the config, call a room and report; what they call lives in the rooms."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        for imported in _imported_modules(path) & ENTRY_MODULES:
            if imported != module:
                offenders.append(f"{path.relative_to(REPO)} imports {imported}")
    assert not offenders, offenders


@pytest.mark.slow
def test_the_editable_install_sees_a_config_added_after_installing(tmp_path):
    """``pip install -e .`` maps ``seq2seq_lit.conf`` to ``conf/``: a YAML added there is composed at once, from any
    folder, without reinstalling (as long as the install is not ``editable_mode=strict``)."""
    if not Path(seq2seq_lit.__file__).resolve().is_relative_to(PACKAGE):
        pytest.skip("seq2seq_lit is not installed editable from this checkout")
    name = f"added_{uuid.uuid4().hex[:8]}"
    added = REPO / "conf" / "experiment" / f"{name}.yaml"
    added.write_text("# @package _global_\ntags: [added_after_install]\nmodel:\n  embedding_size: 40\n")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "seq2seq_lit.train", f"experiment={name}", "--cfg", "job"],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )
    finally:
        added.unlink()
    assert result.returncode == 0, result.stderr[-2000:]
    assert "added_after_install" in result.stdout and "embedding_size: 40" in result.stdout


def test_the_readme_pictures_name_only_files_that_exist():
    """Every ``name.py`` and ``folder/`` in README's architecture picture and project structure exists in the
    checkout (the pictures are kept by hand)."""
    readme = (REPO / "README.md").read_text()
    blocks = [readme.split("## Architecture", 1)[1].split("```")[1], readme.split("## Project structure", 1)[1].split("```")[1]]
    files = [p.relative_to(REPO).as_posix() for p in REPO.rglob("*") if ".venv" not in p.parts and ".git" not in p.parts]
    missing = []
    for block in blocks:
        for name in set(re.findall(r"[\w/]*\w\.py\b", block)) | set(re.findall(r"(?<![\w.])[\w/]*\w/(?=[\s:(,]|$)", block)):
            if not any(f == name.rstrip("/") or f.endswith("/" + name.rstrip("/")) for f in files):
                missing.append(name)
    assert not missing, f"README names files that do not exist: {sorted(missing)}"
