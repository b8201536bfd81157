"""The one reader of request JSON: every route (webhooks, public APIs, the staff consoles, the web
chat's socket frames) parses untrusted JSON here, so hostile bodies meet one set of limits.

orjson (not ``json``): it refuses invalid UTF-8, lone surrogates, NaN/Infinity and numbers past a
double, and stops at depth 1024 with an error, never a ``RecursionError``. Past parsing, a body
nested deeper than ``MAX_DEPTH`` is refused too: no payload we accept comes near it (a Telegram
update is about 8 deep), and code walking the result (a provider library, a validator) stays far
from Python's recursion limit. Duplicate keys: the last one wins, as in every JSON library we know.
Every refusal is a ``BadRequest`` with a short French reason, answered 400 by the error middleware.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.envelope import BadRequest

MAX_DEPTH = 64


def loads(raw: bytes | bytearray | memoryview | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parsed JSON, or BadRequest (French reason)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc):
            raise BadRequest("Corps JSON trop imbriqué.") from exc
        raise BadRequest("Corps JSON illisible.") from exc
    if _deeper_than(data, max_depth):
        raise BadRequest("Corps JSON trop imbriqué.")
    return data


def loads_object(raw: bytes | bytearray | memoryview | str, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """A JSON object, or BadRequest."""
    data = loads(raw, max_depth=max_depth)
    if not isinstance(data, dict):
        raise BadRequest("Un objet JSON est attendu.")
    return data


async def read_object(request: web.Request, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """The request body as a JSON object (the body is bounded by the app's ``client_max_size``: 413)."""
    return loads_object(await request.read(), max_depth=max_depth)


def _deeper_than(data: Any, limit: int) -> bool:
    """Whether containers nest deeper than ``limit`` (iterative: no recursion on hostile input)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
