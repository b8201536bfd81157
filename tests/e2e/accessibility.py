"""axe-core in the page (the copy bundled by axe-playwright-python): every violation, of any impact,
named with the elements it was found on, so a failing test says what to fix."""

from __future__ import annotations

from typing import Any

from axe_playwright_python.async_playwright import Axe

_AXE = Axe()


async def violations(page: Any, label: str) -> list[str]:
    """The page's axe-core violations as readable lines (empty: none)."""
    results = await _AXE.run(page)
    out = []
    for v in results.response.get("violations", []):
        where = [" ".join(str(t) for t in node.get("target", [])) for node in v.get("nodes", [])]
        out.append(f"{label}: {v['id']} ({v.get('impact')}): {v.get('help')} at {where[:5]}")
    return out


async def assert_accessible(page: Any, label: str) -> None:
    found = await violations(page, label)
    assert not found, "axe-core violations:\n" + "\n".join(found)
