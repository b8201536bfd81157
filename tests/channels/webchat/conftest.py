"""A web-chat channel with only its own routes, on real Redis, and a few helpers.

``Harness.accept`` stores into the real inbound stream (as the gateway does) and can be told
to fail: ``faults`` is a list consumed one per accepted message, "before" (storage down, nothing
stored) or "after" (stored, then the answer is lost, as when a process dies right after).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from channels.base import AcceptResult, ChannelContext
from channels.webchat import WebchatChannel
from gateway import keys
from gateway.app import template_env
from gateway.envelope import Message, StatusUpdate
from gateway.settings import Settings
from gateway.streams import Streams


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Harness:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.streams = Streams(redis, shards=1, maxlen=10000, dedup_ttl_s=60)
        self.faults: list[str] = []
        self.statuses: list[StatusUpdate] = []
        self._status_changed = asyncio.Condition()
        self.ctx = ChannelContext(
            settings=settings, redis=redis, templates=template_env(), accept=self.accept, status=self.status
        )
        self.channel = WebchatChannel(self.ctx)

    async def accept(self, msg: Message) -> AcceptResult:
        fault = self.faults.pop(0) if self.faults else None
        if fault == "before":
            raise ConnectionError("storage down (injected)")
        result = await self.streams.accept("in", msg, f"{msg.channel}:{msg.external_id or msg.id}")
        if fault == "after":
            raise ConnectionError("answer lost (injected)")
        return AcceptResult(msg_id=result.msg_id, duplicate=not result.new)

    async def status(self, update: StatusUpdate) -> None:
        async with self._status_changed:
            self.statuses.append(update)
            self._status_changed.notify_all()

    async def wait_statuses(self, n: int, timeout: float = 10.0) -> list[StatusUpdate]:
        async with asyncio.timeout(timeout), self._status_changed:
            await self._status_changed.wait_for(lambda: len(self.statuses) >= n)
        return list(self.statuses)

    async def inbound(self) -> list[Message]:
        return [Message.from_json(f["m"]) for _, f in await self.redis.xrange(keys.stream("in", 0))]

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.max_body_bytes)
        app.add_routes(self.channel.routes())

        async def lifecycle(_: web.Application) -> AsyncIterator[None]:
            await self.channel.start()
            yield
            await self.channel.stop()

        app.cleanup_ctx.append(lifecycle)
        return app

    async def reply(self, session_id: str, text: str, msg_id: str) -> str:
        """What the dispatcher does for a reply on the web chat; returns the external id."""
        msg = Message(id=msg_id, channel="webchat", urn=f"webchat:{session_id}", direction="out", text=text)
        result = await self.channel.send(msg)
        assert result.external_id is not None
        return result.external_id


@pytest.fixture
def make_harness(redis: Redis, settings_env: dict[str, str]) -> Callable[..., Harness]:
    def make(**env: str) -> Harness:
        return Harness(redis, Settings.from_env({**settings_env, **env}))

    return make


@pytest.fixture
async def chat(make_harness: Callable[..., Harness]) -> AsyncIterator[tuple[Harness, TestClient]]:  # type: ignore[type-arg]
    """The channel's routes on 127.0.0.1:<free port>; its own origin is http://127.0.0.1:<port>."""
    port = free_port()
    harness = make_harness(PORT=str(port), WEBCHAT_ALLOWED_ORIGINS="https://www.mutuelle-exemple.fr")
    client: TestClient = TestClient(TestServer(harness.app(), host="127.0.0.1", port=port))  # type: ignore[type-arg]
    await client.start_server()
    yield harness, client
    await client.close()


async def frames_until(ws: Any, pred: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0) -> list[dict[str, Any]]:
    """Frames received until ``pred`` holds for them (fails after ``timeout``)."""
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while not pred(got):
            got.append(await ws.receive_json())
    return got

