"""The product under test for the reliability suite: ``run.py serve`` against loopback Twilio,
Telegram and SMTP servers that can inject faults, with a Redis client to look inside.

Used by the tests (short counts, in CI) and by ``bench/chaos.py`` (long counts), so both run the
same scenarios. Everything listens on 127.0.0.1 and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from redis.asyncio import Redis

from gateway import keys
from gateway.envelope import Message
from tests.e2e.product import ACCOUNT_SID, AUTH_TOKEN, TELEGRAM_TOKEN, Product, loopback_env
from tests.fakes.smtp import SmtpSink
from tests.fakes.telegram import FakeTelegram
from tests.fakes.twilio import FakeTwilio


@dataclass
class Rig:
    product: Product
    twilio: FakeTwilio
    telegram: FakeTelegram
    smtp: SmtpSink
    http: aiohttp.ClientSession
    shards: int
    accepted_at: dict[str, float] = field(default_factory=dict)  # tel: address → its first 200

    def latencies(self) -> list[float]:
        """Seconds from each SMS's first 200 to its sender's first reply reaching Twilio."""
        first: dict[str, float] = {}
        for m in self.twilio.messages:
            first.setdefault(f"tel:{m.to}", m.at)
        return [first[a] - t for a, t in self.accepted_at.items() if a in first and first[a] >= t]

    async def dead_lettered(self) -> int:
        redis = await self.redis()
        try:
            return sum(
                [int(await redis.xlen(keys.dead(k, s))) for k in ("in", "out", "bulk") for s in range(self.shards)]
            )
        finally:
            await redis.aclose()

    async def redis(self) -> Redis:
        port = (self.product.env_var_dir / "redis" / "redis.port").read_text().strip()
        return Redis.from_url(f"redis://127.0.0.1:{port}/0", decode_responses=True)

    async def inbound(self) -> list[Message]:
        """Every message accepted into the inbound streams."""
        redis = await self.redis()
        try:
            out = []
            for shard in range(self.shards):
                for _, fields in await redis.xrange(keys.stream("in", shard)):
                    out.append(Message.from_json(fields["m"]))
            return out
        finally:
            await redis.aclose()

    def replies(self) -> Counter[str]:
        """Messages the providers received from us, by address (tel:, telegram:, mailto:)."""
        out: Counter[str] = Counter()
        out.update(f"tel:{m.to}" for m in self.twilio.messages)
        out.update(f"telegram:{m.chat_id}" for m in self.telegram.sent)
        out.update(f"mailto:{r.rcpt_tos[0]}" for r in self.smtp.received)
        return out

    async def quiet(self, timeout: float = 60.0) -> None:
        """Wait until nothing is pending, lagging or waiting for a retry: no further send can happen."""
        redis = await self.redis()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                busy = 0
                for shard in range(self.shards):
                    busy += await redis.zcard(keys.retry(shard))
                    for kind, group in (("in", "router"), ("out", "dispatcher"), ("bulk", "dispatcher")):
                        if not await redis.exists(keys.stream(kind, shard)):
                            continue  # nothing was ever written there
                        groups = {g["name"]: g for g in await redis.xinfo_groups(keys.stream(kind, shard))}
                        if group not in groups:
                            busy += 1  # the worker has not started reading yet
                            continue
                        busy += int(groups[group].get("pending") or 0) + int(groups[group].get("lag") or 0)
                if busy == 0:
                    await asyncio.sleep(0.3)  # a reply being recorded right now
                    return
                if loop.time() > deadline:
                    raise AssertionError(f"not quiet after {timeout:.0f} s: {busy} entries in hand")
                await asyncio.sleep(0.1)
        finally:
            await redis.aclose()


@contextlib.asynccontextmanager
async def open_rig(workdir: Path, **env: str) -> AsyncIterator[Rig]:
    """Start the fakes and the product; stop everything on the way out, even after a kill -9."""
    async with (
        FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as twilio,
        FakeTelegram(TELEGRAM_TOKEN) as telegram,
        SmtpSink() as smtp,
        aiohttp.ClientSession() as http,
    ):
        os.environ.pop("REDIS_URL", None)
        base = loopback_env(workdir / "var", twilio.base_url, telegram.base_url, smtp.url)
        # Twilio's 10 SMS/s would make replies wait their turn: the product's own times are measured.
        base["SMS_RATE_PER_S"] = "1000"
        product = Product({**base, **env}, workdir / "product.log")
        await product.start()
        try:
            yield Rig(product, twilio, telegram, smtp, http, int(env.get("STREAM_SHARDS", "1")))
        finally:
            with contextlib.suppress(Exception):
                product.stop()
            pidfile = workdir / "var" / "redis" / "redis.pid"  # a kill -9 may have left it behind
            with contextlib.suppress(OSError, ValueError, ProcessLookupError):
                os.kill(int(pidfile.read_text()), signal.SIGTERM)
