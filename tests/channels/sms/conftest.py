"""Fixtures of the SMS channel tests (helpers in sms_harness.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from channels.sms import SmsChannel, create
from gateway.app import error_middleware
from tests.channels.sms.sms_harness import ACCOUNT_SID, AUTH_TOKEN, Harness, HarnessFactory, context, sms_settings
from tests.fakes.twilio import FakeTwilio


@pytest.fixture
async def fake_twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
        yield fake


@pytest.fixture
async def make_sms(
    redis: Redis, settings_env: dict[str, str], fake_twilio: FakeTwilio
) -> AsyncIterator[HarnessFactory]:
    """Build a harness; keyword arguments are extra environment variables."""
    clients: list[TestClient[web.Request, web.Application]] = []

    async def factory(**extra: str) -> Harness:
        settings = sms_settings(settings_env, fake_twilio, **extra)
        channel = create(context(settings, redis))
        assert isinstance(channel, SmsChannel)
        app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[error_middleware])
        app.add_routes(channel.routes())

        async def lifecycle(app: web.Application) -> AsyncIterator[None]:
            await channel.start()
            yield
            await channel.stop()

        app.cleanup_ctx.append(lifecycle)
        client: TestClient[web.Request, web.Application] = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return Harness(channel, client, redis, settings, fake_twilio)

    yield factory
    for client in clients:
        await client.close()


@pytest.fixture
async def sms(make_sms: HarnessFactory) -> Harness:
    return await make_sms()
