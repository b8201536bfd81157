"""Bad input never gets a 5xx; settings fail loudly with the variable's name; Telegram's
per-chat limit spaces sends (all through the real app, a real Redis, loopback providers)."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from gateway.app import Gateway
from gateway.envelope import Message
from gateway.settings import Settings, SettingsError
from tests.fakes.telegram import FakeTelegram

TOKEN = "123456:TESTTOKEN"


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"PORT": "huit"}, "PORT"),
        ({"STREAM_SHARDS": "0"}, "STREAM_SHARDS"),
        ({"TWILIO_ACCOUNT_SID": "AC1"}, "TWILIO_AUTH_TOKEN"),
        ({"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "x"}, "TWILIO_FROM"),
        ({"SEND_TIMEOUT_S": "vite"}, "SEND_TIMEOUT_S"),
        ({"REDIS_APPENDFSYNC": "sometimes"}, "REDIS_APPENDFSYNC"),
    ],
)
def test_bad_settings_name_the_variable(settings_env: dict[str, str], env: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({**settings_env, **env})


def test_secrets_are_redacted(settings_env: dict[str, str]) -> None:
    s = Settings.from_env({**settings_env, "TELEGRAM_TOKEN": TOKEN, "REDIS_URL": "redis://u:pw@h:1/0"})
    shown = str(s.redacted())
    assert TOKEN not in shown and "pw" not in shown and "test-secret-key" not in shown


@pytest.fixture
async def client(redis: Redis, settings_env: dict[str, str]) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    env = {
        **settings_env,
        "TELEGRAM_TOKEN": TOKEN,
        "TWILIO_ACCOUNT_SID": "AC" + "2" * 32,
        "TWILIO_AUTH_TOKEN": "t" * 32,
        "TWILIO_FROM": "+33700000003",
        "SMTP_LISTEN_PORT": "0",
    }
    gateway = Gateway(Settings.from_env(env), redis, roles=frozenset({"web"}))
    c: TestClient = TestClient(TestServer(gateway.build_app(), host="127.0.0.1"))  # type: ignore[type-arg]
    await c.start_server()
    yield c
    await c.close()


async def test_garbage_to_every_route_never_gets_a_5xx(client: TestClient) -> None:  # type: ignore[type-arg]
    assert client.server.app is not None
    paths = sorted({r.resource.canonical for r in client.server.app.router.routes() if r.resource is not None})
    rng = random.Random(7)
    bodies = [b"", b"\x00\xff" * 50, b"{", b"[]", b"null", b'{"a":' * 200, rng.randbytes(2000), b"a=b&" * 500]
    content_types = ["application/json", "application/x-www-form-urlencoded", "text/plain", "multipart/form-data"]
    seen = 0
    for path in paths:
        for body in bodies:
            for ctype in content_types:
                for method in ("GET", "POST"):
                    resp = await client.request(method, path, data=body, headers={"Content-Type": ctype})
                    assert resp.status < 500, (method, path, ctype, body[:20], resp.status)
                    seen += 1
    assert seen > 200
    huge = await client.post("/api/callbacks", data=b"x" * (300 * 1024), headers={"Content-Type": "application/json"})
    assert huge.status == 413


async def test_telegram_sends_to_one_chat_are_spaced(redis: Redis, settings_env: dict[str, str]) -> None:
    async with FakeTelegram(TOKEN) as fake:
        env = {
            **settings_env,
            "TELEGRAM_TOKEN": TOKEN,
            "TELEGRAM_API_BASE": fake.base_url,
            "TELEGRAM_CHAT_RATE_PER_S": "4",
        }
        gw = Gateway(Settings.from_env(env), redis, roles=frozenset({"worker"}), channel_names=["telegram"])
        await gw.start_channels()
        await gw.start_workers()
        try:
            started = time.monotonic()
            for n in range(7):
                await gw.router.enqueue(
                    Message(
                        id=f"t{n}",
                        channel="telegram",
                        urn="telegram:42",
                        direction="out",
                        text=f"{n}",
                        conversation_id="c",
                    )
                )
            sent = await fake.wait_for(7, timeout=15)
            elapsed = time.monotonic() - started
        finally:
            await gw.stop_workers()
            await gw.stop_channels()
    # A burst of 3, then one every 1/4 s: the last of 7 cannot leave before ~1 s.
    assert elapsed >= 0.9
    assert sorted(s.text for s in sent) == [str(n) for n in range(7)]
