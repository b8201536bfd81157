"""gateway/openapi.yaml describes exactly the routes the application registers: every route the app
serves is described, every described path and method reaches a route (so the two cannot drift
apart), the description is valid OpenAPI 3.1 for schemathesis, and the product serves it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from redis.asyncio import Redis

from gateway.settings import Settings
from server.product import Product

SPEC_PATH = Path(__file__).resolve().parents[2] / "gateway" / "openapi.yaml"
METHODS = ("get", "post", "put", "patch", "delete")
CHANNELS_ENV = {
    "TELEGRAM_TOKEN": "123456:TESTTOKEN",
    "TWILIO_ACCOUNT_SID": "AC" + "2" * 32,
    "TWILIO_AUTH_TOKEN": "t" * 32,
    "TWILIO_FROM": "+33700000003",
    "TWILIO_WHATSAPP_FROM": "+33700000003",
    "TWILIO_VOICE_NUMBER": "+33100000004",
    "SMTP_LISTEN_PORT": "0",
}


def load_spec() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    return spec


def _param_value(name: str, item: dict[str, Any], spec: dict[str, Any]) -> str:
    """A value for a path parameter: its first enum value, else a plain one."""
    for param in item.get("parameters", []):
        if "$ref" in param:
            param = spec["components"]["parameters"][param["$ref"].rsplit("/", 1)[1]]
        if param.get("name") == name and param.get("in") == "path":
            enum = param.get("schema", {}).get("enum")
            if enum:
                return str(enum[0])
    return "x1"


@pytest.fixture
async def app(redis: Redis, settings_env: dict[str, str]) -> web.Application:
    # Every channel enabled, so every route is there.
    gateway = Product(Settings.from_env({**settings_env, **CHANNELS_ENV}), redis, roles=frozenset({"web"}))
    return gateway.build_app()


async def test_every_route_is_described_and_every_described_path_exists(app: web.Application) -> None:
    spec = load_spec()
    assert spec["openapi"].startswith("3.1")
    registered = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"  # aiohttp adds HEAD to each GET
    }
    reached: set[tuple[str, str]] = set()
    missing: list[str] = []
    for path, item in spec["paths"].items():
        concrete = path
        for name in re.findall(r"\{([^}]+)\}", path):
            concrete = concrete.replace("{" + name + "}", _param_value(name, item, spec))
        for method in METHODS:
            if method not in item:
                continue
            request = make_mocked_request(method.upper(), concrete, app=app)
            match = await app.router.resolve(request)
            if match.http_exception is not None:
                missing.append(f"{method.upper()} {path}: {match.http_exception.status}")
                continue
            reached.add((method.upper(), match.route.resource.canonical))  # type: ignore[union-attr]
    assert not missing, f"described but not served: {missing}"
    undescribed = sorted(registered - reached)
    assert not undescribed, f"served but not described in gateway/openapi.yaml: {undescribed}"


def test_the_description_loads_in_schemathesis_with_every_operation() -> None:
    schema = schemathesis.openapi.from_dict(load_spec())
    operations, errors = [], []
    for result in schema.get_all_operations():
        (operations if result.__class__.__name__ == "Ok" else errors).append(result)
    assert not errors, errors
    described = sum(1 for item in load_spec()["paths"].values() for m in METHODS if m in item)
    assert len(operations) == described > 50
    ids = [op for item in load_spec()["paths"].values() for m, op in item.items() if m in METHODS]
    names = [o["operationId"] for o in ids]
    assert len(set(names)) == len(names), "operationId must be unique"


@pytest.fixture
async def client(app: web.Application) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    c: TestClient = TestClient(TestServer(app, host="127.0.0.1"))  # type: ignore[type-arg]
    await c.start_server()
    yield c
    # Closed in its own task: awaited directly from this fixture's finaliser, the shutdown of a
    # server that has just started sometimes never completed here (1 run in 4); in a task it always does.
    await asyncio.wait_for(c.close(), 30)


async def test_the_product_serves_its_description(client: TestClient) -> None:  # type: ignore[type-arg]
    resp = await client.get("/openapi.yaml")
    assert resp.status == 200 and resp.content_type == "application/yaml"
    served = yaml.safe_load(await resp.text())
    assert served == load_spec()
    assert served["paths"]["/api/callbacks"]["post"]["requestBody"]["content"]["application/json"]
