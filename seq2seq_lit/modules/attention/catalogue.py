"""The catalogue of attentions: the files of the config group ``model/attention`` (``conf/model/attention``).

Each file is one top-level choice (``model/attention=NAME``): its ``_target_`` names the class, its leading comment
the source and the energy, its keys the options and their defaults. Everything that lists attentions reads them from
here: the score functions that local and multi-head attention are built on (:data:`~.scores.SCORES`: the entries whose
class has ``is_score``), the tests' parameter lists, and the table of ``docs/attention_catalogue.md`` (:func:`markdown_table`, which a test
compares with the page). Adding an attention is its class, its YAML file and its tests.
"""

from __future__ import annotations

import functools
from importlib.resources import files
from pathlib import Path
from typing import Any, Callable, NamedTuple

import hydra
from omegaconf import DictConfig, OmegaConf

from ...utils.entry import CONFIG_MODULE

ATTENTION_CONFIGS = files(CONFIG_MODULE) / "model" / "attention"
"""The group's folder inside the installed configs (an ``importlib.resources`` Traversable)."""


class CatalogueEntry(NamedTuple):
    """One file of ``model/attention``.

    Attributes:
        name: the file name without ``.yaml``, the value of ``model/attention=NAME``.
        config: the file's config (a ``_partial_`` node).
        summary: its leading comment, lines joined (the source and the energy).
    """

    name: str
    config: DictConfig
    summary: str

    @property
    def cls(self) -> type:
        """The class of ``_target_``, imported on first use."""
        return hydra.utils.get_class(self.config._target_)


def _leading_comment(path: Any) -> str:
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines)


@functools.cache
def attention_catalogue() -> dict[str, CatalogueEntry]:
    """Every ``model/attention`` file by name, in name order."""
    return {
        path.name.removesuffix(".yaml"): CatalogueEntry(
            path.name.removesuffix(".yaml"), OmegaConf.create(path.read_text(encoding="utf-8")), _leading_comment(path)
        )
        for path in sorted(ATTENTION_CONFIGS.iterdir(), key=lambda p: p.name)
        if path.name.endswith(".yaml")
    }


def attention_names() -> list[str]:
    """The choices of ``model/attention``, in name order."""
    return list(attention_catalogue())


def attention_factory(name: str, **options: Any) -> Callable[..., Any]:
    """The factory ``f(query_size=..., key_size=...)`` of attention ``name`` as its YAML configures it, with
    ``options`` replacing the file's values (e.g. ``window=2`` for a short test source).

    Raises:
        KeyError: for a name with no file in ``model/attention``.
    """
    return hydra.utils.instantiate(attention_catalogue()[name].config, **options)


def _yaml_value(value: Any) -> str:
    return OmegaConf.to_yaml({"v": value}).strip()[len("v: ") :]


def markdown_table() -> str:
    """The catalogue as a Markdown table: choice, class, options with defaults, and the file's leading comment."""
    rows = ["| `model/attention=` | class | options (defaults) | source and energy |", "|---|---|---|---|"]
    for entry in attention_catalogue().values():
        options = {k: v for k, v in OmegaConf.to_container(entry.config).items() if not k.startswith("_")}
        shown = ", ".join(f"`{k}={_yaml_value(v)}`" for k, v in options.items()) or "none"
        cls = entry.config._target_.rsplit(".", 1)[-1]
        rows.append(f"| `{entry.name}` | `{cls}` | {shown} | {entry.summary.replace('|', '&#124;')} |")
    return "\n".join(rows) + "\n"


def write_page(path: str | Path) -> bool:
    """Replace the table of the Markdown page ``path`` (from its header row to the first line after the table that
    is not a row) with :func:`markdown_table`; returns whether the page changed.

    Raises:
        ValueError: the page has no catalogue table (its header row is missing).
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    header = markdown_table().splitlines(keepends=True)[0]
    if header not in lines:
        raise ValueError(f"{path}: no catalogue table (a line {header.strip()!r}); fix: add that header row")
    start = lines.index(header)
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    text = "".join(lines[:start]) + markdown_table() + "".join(lines[end:])
    changed = text != "".join(lines)
    if changed:
        path.write_text(text, encoding="utf-8")
    return changed

