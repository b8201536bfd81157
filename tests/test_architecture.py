"""Each room imports only what ARCHITECTURE.md allows it: read from the import statements of every
module (those inside functions included), so a forbidden import fails here before it lands."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROOMS = ("gateway", "channels", "members", "staff", "agents", "campaigns", "server", "bot")

# Room -> the modules (or packages) of other rooms it may import; its own are always allowed.
ALLOWED: dict[str, tuple[str, ...]] = {
    # The core: channels are reached only through their small surface and the registry.
    "gateway": ("channels.base", "channels.registry"),
    # Channels use the core's envelope, keys and helpers, and nothing above it.
    "channels": ("gateway",),
    "members": ("gateway",),
    "staff": ("gateway",),
    "agents": ("gateway", "members", "staff"),
    "campaigns": ("gateway", "channels", "members", "staff"),
    # The bot's actions (in Rasa's virtualenv) read member records, and conversation state under the
    # key names every room shares; they emit the events they cause (gateway.events: stdlib and keys only).
    "bot": ("members", "gateway.keys", "gateway.events"),
    # The composition root sees every room.
    "server": ("gateway", "channels", "members", "staff", "agents", "campaigns"),
}


def imported(path: Path) -> list[tuple[int, str]]:
    """(line, name) of every absolute import in the file: ``from a.b import c`` counts as ``a.b.c``
    (``c`` may be a module: ``from gateway import keys``)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return out


def modules(room: str) -> list[Path]:
    skip = {".venv", "models", "__pycache__"}
    return [p for p in sorted((ROOT / room).rglob("*.py")) if not skip & set(p.relative_to(ROOT).parts)]


def violations(room: str) -> list[str]:
    found = []
    for path in modules(room):
        for line, module in imported(path):
            top = module.split(".", 1)[0]
            if top not in ROOMS or top == room:
                continue
            if not any(module == ok or module.startswith(ok + ".") for ok in ALLOWED[room]):
                found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return found


@pytest.mark.parametrize("room", ROOMS)
def test_room_imports_only_what_it_may(room: str) -> None:
    assert modules(room), f"{room}/ has no modules"
    assert violations(room) == []


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The rule is not vacuous: the core importing the agents' console is caught."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from agents.console import Console\n    import campaigns.engine\n")
    assert [m for _, m in imported(sample)] == ["agents.console.Console", "campaigns.engine"]
    allowed = ALLOWED["gateway"]
    assert not any(m.startswith(ok) for _, m in imported(sample) for ok in allowed)


def test_architecture_names_every_room() -> None:
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    for room in ROOMS:
        assert f"`{room}/`" in text, f"ARCHITECTURE.md does not describe {room}/"
