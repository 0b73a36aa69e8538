"""The package works installed from its wheel, away from the repository: the wheel carries the configs, and the entry
points find them, and a user's own experiment folder, from any directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import REPO

pytestmark = pytest.mark.slow  # builds and installs a wheel: about a minute

SHIPPED = (  # the top-level conf/ is the package seq2seq_lit.conf in the wheel
    "seq2seq_lit/conf/train.yaml",
    "seq2seq_lit/conf/experiment/quickstart.yaml",
    "seq2seq_lit/conf/model/attention/general.yaml",
    "hydra_plugins/seq2seq_lit_sweep/ray_trials.py",  # the launcher class of hydra/launcher=ray
)

USER_EXPERIMENT = """# @package _global_
defaults:
  - override /model/attention: additive
tags: [mine]
model:
  embedding_size: 48
"""


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """The wheel built from a copy of the sources, and the folder it is installed into (``pip install --target``)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"  # a copy: building in the checkout would leave build/ and *.egg-info there
    for folder in ("seq2seq_lit", "conf", "hydra_plugins"):
        shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__", "local"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"), str(source)], cwd=root)
    (wheel,) = (root / "dist").glob("seq2seq_lit-*.whl")
    run([*pip, "install", "--no-deps", "--no-compile", "--target", str(root / "site"), str(wheel)], cwd=root)
    return wheel, root / "site"


def installed_env(site: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}


def in_wheel(path: Path) -> str:
    """The name a checkout file has in the wheel (``conf/x.yaml`` -> ``conf/x.yaml``)."""
    name = path.relative_to(REPO).as_posix()
    return f"seq2seq_lit/{name}" if name.startswith("conf/") else name


def test_the_wheel_carries_every_config_file(installed):
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(SHIPPED) <= names
    in_repo = {in_wheel(p) for p in (REPO / "conf").rglob("*.yaml") if "local" not in p.relative_to(REPO).parts}
    assert in_repo <= names, sorted(in_repo - names)  # conf/local/ is untracked and machine-specific


def test_the_wheel_carries_every_module(installed):
    """pyproject.toml lists the packages (``seq2seq_lit.conf`` lives outside ``seq2seq_lit/``): a new folder must be
    listed there too."""
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    in_repo = {in_wheel(p) for folder in ("seq2seq_lit", "conf") for p in (REPO / folder).rglob("*.py")}
    assert in_repo <= names, f"missing from the wheel (add the package to pyproject.toml): {sorted(in_repo - names)}"


def test_the_installed_package_composes_its_configs_outside_the_repository(installed, tmp_path):
    _, site = installed
    env = installed_env(site)
    where = run([sys.executable, "-c", "import seq2seq_lit; print(seq2seq_lit.__file__)"], tmp_path, env).stdout.strip()
    assert Path(where).is_relative_to(site), where  # the installed copy, not the checkout
    job = run([sys.executable, "-m", "seq2seq_lit.train", "experiment=quickstart", "--cfg", "job"], tmp_path, env).stdout
    assert "- quickstart" in job and "GeneralAttention" in job
    scores = run([sys.executable, "-c", "from seq2seq_lit.modules.attention import SCORES; print(*SCORES)"], tmp_path, env)
    assert "general" in scores.stdout.split()  # the attention catalogue reads the installed YAML files


def test_a_users_own_experiment_folder_is_found_by_the_console_script(installed, tmp_path):
    _, site = installed
    (tmp_path / "my_configs" / "experiment").mkdir(parents=True)
    (tmp_path / "my_configs" / "experiment" / "mine.yaml").write_text(USER_EXPERIMENT)
    script = site / "bin" / "s2s-train"
    args = [sys.executable, str(script), "--config-dir", "my_configs", "experiment=mine", "--cfg", "job"]
    job = run(args, tmp_path, installed_env(site)).stdout
    assert "- mine" in job and "embedding_size: 48" in job and "AdditiveAttention" in job
