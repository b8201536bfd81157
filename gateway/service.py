"""``run.py serve``: everything in one process, with embedded defaults.

Starts a private Redis (unless ``REDIS_URL`` is set), the web application with every
enabled channel (the SMTP listener included) and the workers; prints the URLs to open;
on Ctrl-C or SIGTERM stops accepting, finishes the messages in hand and shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from aiohttp import web
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.app import Gateway
from gateway.redis_server import PrivateRedis
from gateway.settings import Settings

log = logging.getLogger(__name__)


def connect(url: str) -> Redis:
    """A client that reconnects by itself after Redis restarts."""
    return Redis.from_url(
        url,
        decode_responses=True,
        health_check_interval=15,
        socket_keepalive=True,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=20),
        retry_on_error=[RedisConnectionError, RedisTimeoutError, ConnectionResetError],
    )


def banner(settings: Settings, gateway: Gateway, redis_desc: str) -> str:
    base = settings.base_url
    lines = [
        "",
        "Passerelle démarrée / gateway running",
        f"  Demo page and web chat : {base}/",
        f"  Callback request form  : {base}/callback",
        f"  Health / metrics       : {base}/healthz  {base}/metrics",
        f"  Redis                  : {redis_desc}",
    ]
    if "email" in gateway.channels:
        outbound = "relay configured" if settings.smtp_url else f"file outbox {settings.var_dir / 'outbox'}"
        lines.append(f"  E-mail in (SMTP)       : {settings.smtp_listen_host}:{settings.smtp_listen_port} ({outbound})")
    lines.append(
        "  SMS (Twilio)           : "
        + (
            f"{settings.public_url}/sms/twilio/inbound"
            if settings.sms_enabled
            else "disabled (set TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_FROM)"
        )
    )
    lines.append(
        "  Telegram               : "
        + (f"{settings.public_url}/telegram/webhook" if settings.telegram_enabled else "disabled (set TELEGRAM_TOKEN)")
    )
    lines.append("Ctrl-C to stop.")
    return "\n".join(lines)


async def serve(settings: Settings) -> None:
    private: PrivateRedis | None = None
    url = settings.redis_url
    if not url:
        private = PrivateRedis(settings.var_dir / "redis", appendfsync=settings.redis_appendfsync)
        url = private.start()
        redis_desc = f"private redis-server on {url} (AOF, data in {private.data_dir})"
        if private.adopted:
            redis_desc += ", adopted from a previous run"
    else:
        redis_desc = "REDIS_URL"
    redis = connect(url)
    try:
        await redis.ping()
        gateway = Gateway(settings, redis)
        app = gateway.build_app()
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=10.0)
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise SystemExit(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror} (set PORT)") from exc
        print(banner(settings, gateway, redis_desc), flush=True)
        log.info("gateway started", extra={"port": settings.port, "channels": sorted(gateway.channels)})
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        print("Arrêt en cours… / stopping: finishing messages in hand", file=sys.stderr, flush=True)
        # Stops the listeners first, lets requests in flight finish, then stops channels and workers.
        await runner.cleanup()
        log.info("gateway stopped")
    finally:
        with contextlib.suppress(Exception):
            await redis.aclose()
        if private is not None:
            private.stop()
