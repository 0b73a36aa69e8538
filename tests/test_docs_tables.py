"""The option tables of README.md and docs/configuration.md name every option file of every config group (issue 26:
the table had fallen behind the newer groups and presets)."""

from __future__ import annotations

import re

import pytest

from .conftest import CONF_DIR, REPO

GROUPS = ("data", "model/scheduler", "model/encoder", "model/attention", "model/decoder", "model/teacher_forcing",
          "model/search", "experiment", "trainer", "logger", "callbacks", "debug")


def table_rows(page: str) -> dict[str, str]:
    """``{group: options cell}`` of the page's ``| group | options | what it sets |`` table."""
    rows = {}
    for line in (REPO / page).read_text().splitlines():
        if match := re.match(r"\| `([\w/]+)` \| (.*?) \|", line):
            rows[match[1]] = match[2]
    return rows


@pytest.mark.parametrize("page", ["README.md", "docs/configuration.md"])
def test_the_option_table_names_every_option_file(page):
    rows = table_rows(page)
    for group in GROUPS:
        options = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
        assert group in rows, f"{page}: no row for the group {group}"
        missing = [o for o in options if f"`{o}`" not in rows[group]]
        assert not missing, f"{page}: the {group} row does not name {', '.join(missing)}"
