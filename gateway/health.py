"""Readiness: can this process do its work right now? ``/readyz`` asks each dependency it uses.

* Redis: a PING.
* The bot (when the responder is Rasa): Rasa's ``/status``, and the action server's ``/health`` when
  its URL is known (with a fleet, one server of each answering is enough) (``run.py serve`` passes it; with an external Rasa, ``ACTIONS_URL``). An action
  server that cannot start is otherwise seen only as "no answer" from the bot.
* The SMTP relay (when configured): a TCP connection that gets the server's 220 greeting.

Each check has a short time limit; the answer lists every check, 200 when all are "ok", else 503.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import aiohttp
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.settings import Settings

TIMEOUT_S = 2.0


async def readiness(settings: Settings, redis: Redis) -> dict[str, str]:
    checks = {"redis": _redis(redis)}
    if settings.responder == "rasa" and settings.rasa_url:
        # A fleet is ready while one of its servers (and one action server) answers.
        checks["rasa"] = _any([f"{u}/status" for u in _split(settings.rasa_url)])
        if settings.actions_url:
            checks["actions"] = _any([f"{u}/health" for u in _split(settings.actions_url)])
    if settings.smtp_url:
        checks["smtp_relay"] = _smtp(settings.smtp_url)
    results = await asyncio.gather(*checks.values())
    return dict(zip(checks, results, strict=True))


async def _redis(redis: Redis) -> str:
    try:
        await asyncio.wait_for(redis.ping(), TIMEOUT_S)
        return "ok"
    except (RedisError, OSError, TimeoutError):
        return "unavailable"


def _split(urls: str) -> list[str]:
    return [u.strip().rstrip("/") for u in urls.split(",") if u.strip()]


async def _any(urls: list[str]) -> str:
    results = await asyncio.gather(*(_http(u) for u in urls))
    return "ok" if "ok" in results else results[0]


async def _http(url: str) -> str:
    try:
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as resp:
            return "ok" if resp.status == 200 else f"http {resp.status}"
    except (aiohttp.ClientError, OSError, TimeoutError):
        return "unavailable"


async def _smtp(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (465 if parts.scheme == "smtps" else 587)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname or "127.0.0.1", port), TIMEOUT_S)
    except (OSError, TimeoutError):
        return "unavailable"
    try:
        if parts.scheme == "smtps":
            return "ok"  # the greeting comes after TLS; the connection is what we can check cheaply
        greeting = await asyncio.wait_for(reader.readline(), TIMEOUT_S)
        return "ok" if greeting.startswith(b"220") else "unexpected greeting"
    except (OSError, TimeoutError):
        return "unavailable"
    finally:
        writer.close()
