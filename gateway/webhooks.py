"""Signed webhooks out: every event of ``keys.EVENTS_STREAM`` POSTed to each of ``WEBHOOK_URLS``.

At least once, per URL: a consumer group reads the stream and turns each event into one delivery per
URL (a sorted set by due time, and the body), and acknowledges the entry only then; deliveries are
taken with a lease (a process that dies mid-delivery leaves it due again when the lease ends), retried
with exponential backoff and full jitter up to ``WEBHOOK_MAX_ATTEMPTS``, then set aside in a
dead-letter stream the supervisors' page shows. Order is not guaranteed; the receiver de-duplicates on
the event id (the same in every attempt).

Signature, as the providers sign theirs: ``X-Webhook-Timestamp`` (Unix seconds) and
``X-Webhook-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>" with WEBHOOK_SECRET>``; the event id
is also in ``X-Webhook-Id``. A 2xx answer is a delivery; anything else (and no answer within
``WEBHOOK_TIMEOUT_S``) is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from gateway import keys
from gateway.settings import Settings
from gateway.streams import consumer_name

log = logging.getLogger(__name__)

GROUP = "webhooks"
LEASE_MS = 60_000
BATCH = 50
DEAD_MAXLEN = 10_000

# KEYS[1] = deliveries (sorted set). ARGV = now ms, lease ms, count. Takes due deliveries for a lease.
_TAKE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(due) do redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), m) end
return due
"""


def signature(secret: str, timestamp: str, body: bytes) -> str:
    return "v1=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def masked(url: str) -> str:
    """A URL as logs and the supervisors' page show it: scheme, host and path, no credentials or query."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


def body_of(entry: dict[str, Any]) -> bytes:
    """The webhook's body: the event as JSON (``id``, ``type``, ``created_at`` in ms, ``data``)."""
    data = json.loads(entry.get("data") or "{}")
    event = {"id": entry.get("id", ""), "type": entry.get("type", ""), "created_at_ms": int(entry.get("at_ms") or 0),
             "data": data}  # fmt: skip
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()


class WebhookSender:
    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.settings = settings
        self.redis = redis
        self.urls = settings.webhook_urls
        self._take = redis.register_script(_TAKE_DUE)
        self._session: aiohttp.ClientSession | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """The job (a dispatcher role's): stream to deliveries, deliveries out, until ``stop``."""
        if not self.urls:
            await stop.wait()
            return
        with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists
            await self.redis.xgroup_create(keys.EVENTS_STREAM, GROUP, id="0", mkstream=True)
        name = consumer_name(self.settings.consumer_name)
        timeout = aiohttp.ClientTimeout(total=self.settings.webhook_timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            self._session = session
            while not stop.is_set():
                try:
                    queued = await self.enqueue(name)
                    sent = await self.deliver_due()
                except (RedisError, ConnectionError) as exc:
                    log.warning("webhooks: storage unavailable", extra={"error": type(exc).__name__})
                    queued = sent = 0
                if not queued and not sent:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.2)
        self._session = None

    async def enqueue(self, consumer: str) -> int:
        """New stream entries (and this consumer's, or a dead consumer's, unacknowledged ones) become
        one delivery per URL, due now; the entry is acknowledged once they are written."""
        _, claimed, *_ = await self.redis.xautoclaim(keys.EVENTS_STREAM, GROUP, consumer, min_idle_time=LEASE_MS,
                                                     start_id="0-0", count=BATCH)  # fmt: skip
        entries = list(claimed)
        read = await self.redis.xreadgroup(GROUP, consumer, {keys.EVENTS_STREAM: ">"}, count=BATCH)
        for _stream, items in read or []:
            entries += items
        if not entries:
            return 0
        now = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id, fields in entries:
                if not fields:
                    continue
                body = body_of(fields)
                for url in self.urls:
                    member = f"{fields.get('id', entry_id)} {url}"
                    pipe.hsetnx(keys.EVENTS_PAYLOADS, member, body)
                    pipe.zadd(keys.EVENTS_DELIVERIES, {member: now}, nx=True)
            pipe.xack(keys.EVENTS_STREAM, GROUP, *[e for e, _ in entries])
            await pipe.execute()
        return len(entries)

    async def deliver_due(self) -> int:
        now = int(time.time() * 1000)
        due = await self._take(keys=[keys.EVENTS_DELIVERIES], args=[now, LEASE_MS, BATCH])
        if not due:
            return 0
        await asyncio.gather(*(self._deliver(str(m)) for m in due))
        return len(due)

    async def _deliver(self, member: str) -> None:
        eid, _, url = member.partition(" ")
        body = await self.redis.hget(keys.EVENTS_PAYLOADS, member)
        if body is None:  # delivered meanwhile by another copy
            await self.redis.zrem(keys.EVENTS_DELIVERIES, member)
            return
        raw = body.encode() if isinstance(body, str) else body
        error = await self.post(url, eid, raw)
        if error is None:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zrem(keys.EVENTS_DELIVERIES, member)
                pipe.hdel(keys.EVENTS_PAYLOADS, member, f"{member}\x1fattempts")
                await pipe.execute()
            log.info("webhook delivered", extra={"event_id": eid, "url": masked(url)})
            return
        attempts = int(await self.redis.hincrby(keys.EVENTS_PAYLOADS, f"{member}\x1fattempts", 1))
        s = self.settings
        if attempts >= s.webhook_max_attempts:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xadd(keys.EVENTS_DEAD, {"event_id": eid, "url": masked(url), "error": error[:300],
                                             "attempts": str(attempts), "body": raw.decode()},
                          maxlen=DEAD_MAXLEN, approximate=True)  # fmt: skip
                pipe.zrem(keys.EVENTS_DELIVERIES, member)
                pipe.hdel(keys.EVENTS_PAYLOADS, member, f"{member}\x1fattempts")
                await pipe.execute()
            log.error("webhook given up", extra={"event_id": eid, "url": masked(url), "attempts": attempts,
                                                 "error": error[:200]})  # fmt: skip
            return
        backoff = min(s.webhook_backoff_max_s, s.webhook_backoff_base_s * 2 ** (attempts - 1))
        due = int(time.time() * 1000 + random.uniform(backoff / 2, backoff) * 1000)  # jitter
        await self.redis.zadd(keys.EVENTS_DELIVERIES, {member: due})
        log.warning("webhook failed, will retry", extra={"event_id": eid, "url": masked(url), "attempts": attempts,
                                                         "error": error[:200]})  # fmt: skip

    async def post(self, url: str, eid: str, body: bytes) -> str | None:
        """One signed POST; None when the receiver took it (2xx), else what went wrong."""
        assert self._session is not None
        ts = str(int(time.time()))
        headers = {"Content-Type": "application/json", "X-Webhook-Id": eid, "X-Webhook-Timestamp": ts,
                   "X-Webhook-Signature": signature(self.settings.webhook_secret, ts, body),
                   "User-Agent": "mutuelle-gateway-webhooks"}  # fmt: skip
        try:
            async with self._session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
                await resp.read()
                return None if 200 <= resp.status < 300 else f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return type(exc).__name__


async def dead_letters(redis: Redis, limit: int = 100) -> dict[str, Any]:
    """Webhook deliveries given up, newest first (event id and type, URL without credentials, error)."""
    total = int(await redis.xlen(keys.EVENTS_DEAD))
    items = []
    for entry_id, fields in await redis.xrevrange(keys.EVENTS_DEAD, count=limit):
        try:
            event_type = str(json.loads(fields.get("body") or "{}").get("type", ""))
        except ValueError:
            event_type = ""
        items.append({"id": entry_id, "at_ms": int(str(entry_id).split("-")[0]), "event_id": fields.get("event_id", ""),
                      "type": event_type, "url": fields.get("url", ""), "error": fields.get("error", ""),
                      "attempts": int(fields.get("attempts") or 0)})  # fmt: skip
    return {"count": total, "items": items}
