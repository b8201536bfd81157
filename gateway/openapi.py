"""``GET /openapi.yaml``: the OpenAPI 3.1 description of every HTTP route (gateway/openapi.yaml).

The file is served as it is, read once. tests/gateway/test_openapi.py keeps it in step with the
routes the application registers; tests/gateway/test_fuzz.py fuzzes the product from it.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

DESCRIPTION = Path(__file__).resolve().parent / "openapi.yaml"


def routes() -> web.RouteTableDef:
    r = web.RouteTableDef()
    body = DESCRIPTION.read_bytes()

    @r.get("/openapi.yaml")
    async def description(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/yaml", charset="utf-8",
                            headers={"Cache-Control": "no-cache"})  # fmt: skip

    return r
