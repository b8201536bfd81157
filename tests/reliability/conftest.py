"""The reliability suite: each test runs a scenario against the real product, asserts on its figures,
and the figures of the whole run are printed as one table at the end (and by ``bench/chaos.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.rig import Rig, open_rig
from tests.reliability.scenarios import Figures

FIGURES: list[Figures] = []


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with open_rig(tmp_path) as r:
        yield r


def report(fig: Figures) -> Figures:
    FIGURES.append(fig)
    return fig


def table(rows: list[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.write_sep("=", "reliability figures")
        terminalreporter.write_line(table([f.row() for f in FIGURES]))
