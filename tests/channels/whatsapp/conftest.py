"""Fixtures of the WhatsApp channel tests: the WhatsApp and SMS channels' routes in one aiohttp
test server (Twilio may post WhatsApp to either), a real Redis, the loopback fake of Twilio."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from channels.sms import SmsChannel
from channels.sms import create as create_sms
from channels.whatsapp import WhatsAppChannel, create
from gateway import keys
from gateway.app import error_middleware
from tests.channels.sms.sms_harness import ACCOUNT_SID, AUTH_TOKEN, Harness, context, sms_settings
from tests.fakes.twilio import FakeTwilio

WHATSAPP_FROM = "+33700000000"
NOTICE_TEMPLATE = "HX" + "ab" * 16


@dataclass
class WaHarness(Harness):
    whatsapp: WhatsAppChannel | None = None

    async def window_open(self, urn: str) -> bool:
        return bool(await self.redis.exists(keys.whatsapp_window(urn)))

    async def wa_opted_out(self, urn: str) -> bool:
        return bool(await self.redis.sismember(keys.opt_out("whatsapp"), urn))


WaFactory = Callable[..., Awaitable[WaHarness]]


@pytest.fixture
async def fake_twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
        yield fake


@pytest.fixture
async def make_wa(redis: Redis, settings_env: dict[str, str], fake_twilio: FakeTwilio) -> AsyncIterator[WaFactory]:
    """Build a harness; keyword arguments are extra environment variables."""
    clients: list[TestClient[web.Request, web.Application]] = []

    async def factory(**extra: str) -> WaHarness:
        env = {"TWILIO_WHATSAPP_FROM": WHATSAPP_FROM, "TWILIO_WHATSAPP_NOTICE_CONTENT_SID": NOTICE_TEMPLATE, **extra}
        settings = sms_settings(settings_env, fake_twilio, **env)
        ctx = context(settings, redis)
        whatsapp = create(ctx)
        sms = create_sms(ctx)
        assert isinstance(whatsapp, WhatsAppChannel) and isinstance(sms, SmsChannel)
        app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[error_middleware])
        app.add_routes(whatsapp.routes())
        app.add_routes(sms.routes())

        async def lifecycle(app: web.Application) -> AsyncIterator[None]:
            yield
            await whatsapp.stop()
            await sms.stop()

        app.cleanup_ctx.append(lifecycle)
        client: TestClient[web.Request, web.Application] = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return WaHarness(sms, client, redis, settings, fake_twilio, whatsapp)

    yield factory
    for client in clients:
        await client.close()


@pytest.fixture
async def wa(make_wa: WaFactory) -> WaHarness:
    return await make_wa()
