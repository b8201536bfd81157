"""Helpers for the SMS channel tests: the channel's routes alone in an aiohttp test server,
a real Redis, and the loopback fake of Twilio's API for sending."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import jinja2
from aiohttp import web
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from channels.base import AcceptResult, ChannelContext
from channels.sms import SmsChannel
from gateway import keys
from gateway.envelope import Message, StatusUpdate
from gateway.settings import Settings
from gateway.streams import Streams
from tests.fakes.twilio import FakeTwilio, sign

ACCOUNT_SID = "ACa1b2c3d4e5f60718293a4b5c6d7e8f90"
AUTH_TOKEN = "f3a9c1d2e4b5a6978877665544332211"
OUR_NUMBER = "+33700000000"
# Not the test server's address: every request checks that signatures are verified
# against the configured public URL (as behind a reverse proxy), never the bind address.
PUBLIC_URL = "https://passerelle.mutuelle.example"
STATUS_LOG = "test:sms:statuses"


@dataclass
class Harness:
    channel: SmsChannel
    client: TestClient[web.Request, web.Application]
    redis: Redis
    settings: Settings
    fake: FakeTwilio

    async def post(
        self,
        path: str,
        body: Mapping[str, str] | str | bytes,
        *,
        headers: Mapping[str, str] | None = None,
        sign_url: str | None = None,
        sign_params: Mapping[str, str] | None = None,
        token: str = AUTH_TOKEN,
    ) -> tuple[int, str, str]:
        """POST a webhook as Twilio would, signed over ``sign_url`` (default public URL + path)
        and ``sign_params`` (default the body's own parameters). ``headers`` replace the
        default ones; a header value ``{signature}`` is replaced by the signature."""
        raw = urllib.parse.urlencode(body).encode() if isinstance(body, Mapping) else body
        raw = raw.encode() if isinstance(raw, str) else raw
        params = (
            sign_params
            if sign_params is not None
            else dict(urllib.parse.parse_qsl(raw.decode(), keep_blank_values=True))
        )
        signature = sign(sign_url or PUBLIC_URL + path, token, params)
        wanted = (
            dict(headers)
            if headers is not None
            else {
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": "{signature}",
            }
        )
        final = {k: (signature if v == "{signature}" else v) for k, v in wanted.items()}
        resp = await self.client.post(path, data=raw, headers=final)
        return resp.status, await resp.text(), resp.content_type

    async def accepted(self) -> list[Message]:
        entries = await self.redis.xrange(keys.stream("in", 0))
        return [Message.from_json(fields["m"]) for _, fields in entries]

    async def statuses(self) -> list[StatusUpdate]:
        return [StatusUpdate(**json.loads(raw)) for raw in await self.redis.lrange(STATUS_LOG, 0, -1)]

    async def opted_out(self, urn: str) -> bool:
        return bool(await self.redis.sismember(keys.opt_out("sms"), urn))

    @property
    def status_url(self) -> str:
        """Where the test server really listens for status callbacks."""
        return str(self.client.make_url("/sms/twilio/status"))


def sms_settings(env: dict[str, str], fake: FakeTwilio, **extra: str) -> Settings:
    return Settings.from_env(
        {
            **env,
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_FROM": OUR_NUMBER,
            "TWILIO_API_BASE": fake.base_url,
            "PUBLIC_URL": PUBLIC_URL,
            **extra,
        }
    )


def context(settings: Settings, redis: Redis) -> ChannelContext:
    """Real accept/status functions writing to the real Redis, as the gateway's do."""
    streams = Streams(redis, shards=1, maxlen=10_000, dedup_ttl_s=60)

    async def accept(msg: Message) -> AcceptResult:
        result = await streams.accept("in", msg, f"{msg.channel}:{msg.external_id or msg.id}")
        return AcceptResult(msg_id=result.msg_id, duplicate=not result.new)

    async def status(update: StatusUpdate) -> None:
        await redis.rpush(STATUS_LOG, json.dumps({k: v for k, v in asdict(update).items() if k != "ref" or v}))

    return ChannelContext(settings=settings, redis=redis, templates=jinja2.Environment(), accept=accept, status=status)


def subset(actual: Any, expected: Any) -> bool:
    """``expected``'s keys (recursively) all present in ``actual`` with equal values."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and subset(actual[k], v) for k, v in expected.items())
    return bool(actual == expected)


HarnessFactory = Callable[..., Awaitable[Harness]]
