"""Per-address rate limits on the endpoints anyone may call without signing in.

The web chat's session and socket and the unsubscribe pages are limited per client address with the
GCRA buckets of ``gateway.ratelimit`` (in Redis, so every web process shares them), here, before the
handler. The callback form and API (each request puts a call in an agent's queue and sends an SMS)
are limited by the callback channel itself with ``CallbackLimits`` below, once it knows whether the
request is accepted: only accepted requests count against ``CALLBACK_RATE_PER_HOUR``; refused ones
(a typing mistake) have a looser limit of their own, so honest mistakes do not lock a member out. Signed provider
webhooks are not limited here (Twilio and Telegram call from a few addresses at high rates; their
signatures are what protects them), nor is the console, whose login has its own limits.

The client address is the peer's, unless ``TRUSTED_PROXY_HOPS`` says how many proxies of ours
append to ``X-Forwarded-For``: the address is then the one our outermost proxy saw (counted from the
right; entries further left are whatever the client wrote). IPv6 clients are counted per /64, the
block one subscriber usually holds.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway.metrics import INBOUND_REJECTED
from gateway.ratelimit import RateLimiter
from gateway.settings import Settings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

TOO_MANY = "Trop de demandes depuis votre connexion. Merci de réessayer dans quelques minutes."


@dataclass(frozen=True, slots=True)
class Limit:
    name: str
    per_second: float
    burst: int


def limits_for(settings: Settings) -> tuple[Limit, Limit]:
    callback = Limit("callback", settings.callback_rate_per_hour / 3600, settings.callback_burst)
    public = Limit("public", settings.public_rate_per_min / 60, settings.public_burst)
    return callback, public


def limit_of(request: web.Request, callback: Limit, public: Limit) -> Limit | None:
    """The limit the middleware applies before the handler (the callback channel applies its own)."""
    path, method = request.path, request.method
    if (method == "POST" and path == "/webchat/session") or (method == "GET" and path == "/webchat/ws"):
        return public
    if path.startswith("/desabonnement/"):
        return public
    return None


def client_address(request: web.Request, trusted_hops: int) -> str:
    """The address to count the request against (see the module's docstring)."""
    raw = request.remote or ""
    if trusted_hops > 0:
        hops = [h.strip() for h in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",") if h.strip()]
        if len(hops) >= trusted_hops:
            raw = hops[-trusted_hops]
    try:
        address = ipaddress.ip_address(raw.strip("[]"))
    except ValueError:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class CallbackLimits:
    """Per-address limits of callback requests: accepted ones, and refused ones (their own bucket)."""

    def __init__(self, settings: Settings, limiter: RateLimiter) -> None:
        self.settings = settings
        self.limiter = limiter
        self.accepted = Limit("callback", settings.callback_rate_per_hour / 3600, settings.callback_burst)
        self.invalid = Limit(
            "callback_invalid", settings.callback_invalid_rate_per_hour / 3600, settings.callback_invalid_burst
        )

    async def acquire(self, request: web.Request, *, accepted: bool) -> float:
        """Count one request from the client's address; 0.0 when allowed, else the seconds to wait."""
        limit = self.accepted if accepted else self.invalid
        who = client_address(request, self.settings.trusted_proxy_hops)
        wait = await self.limiter.acquire(f"{limit.name}:{who}", limit.per_second, limit.burst)
        if wait > 0:
            INBOUND_REJECTED.labels("callback", "rate_limited").inc()
        return wait


def wait_wording(seconds: float) -> str:
    """« 1 minute », « 12 minutes », « 2 h 05 »: how long to wait, for a French page."""
    minutes = max(1, math.ceil(seconds / 60))
    if minutes < 60:
        return f"{minutes} minute{'s' if minutes > 1 else ''}"
    return f"{minutes // 60} h {minutes % 60:02d}"


def middleware(settings: Settings, limiter: RateLimiter) -> Middleware:
    callback, public = limits_for(settings)

    async def refusal(request: web.Request, limit: Limit) -> web.Response | None:
        who = client_address(request, settings.trusted_proxy_hops)
        group = request.path.strip("/").split("/", 1)[0]  # webchat, desabonnement: a bucket each
        bucket = limit.name if limit is callback else f"{limit.name}:{group}"
        wait = await limiter.acquire(f"{bucket}:{who}", limit.per_second, limit.burst)
        if wait <= 0:
            return None
        INBOUND_REJECTED.labels(group or "http", "rate_limited").inc()
        headers = {"Retry-After": str(max(1, math.ceil(wait)))}
        if request.path.startswith("/api/") or request.path.startswith("/webchat/"):
            body = {"error": "rate_limited", "detail": TOO_MANY, "retry_after_s": math.ceil(wait)}
            return web.json_response(body, status=429, headers=headers)
        return web.Response(status=429, text=TOO_MANY, headers=headers)

    async def limited(request: web.Request, handler: Handler, limit: Limit) -> web.StreamResponse:
        # Small on purpose: a web-chat socket's handler runs inside this frame for the socket's life.
        return await refusal(request, limit) or await handler(request)

    @web.middleware
    def public_limits(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
        limit = limit_of(request, callback, public)
        return handler(request) if limit is None else limited(request, handler, limit)

    return public_limits
