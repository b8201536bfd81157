"""The gateway: one object holding the messaging core's shared resources, and its aiohttp application.

``Gateway`` lends channels what they need (``ChannelContext``), runs the router and the
dispatcher as stream consumers, and builds the core web application: every channel's routes,
``/healthz``, ``/readyz``, ``/metrics`` and ``/openapi.yaml``. Resources open and close in
``cleanup_ctx``. It knows nothing of the rooms above it (agents, members, campaigns): the
composition root (``server/product.py``) adds their routes and hooks them in through the lists
below (``jobs``, ``on_delivery_failed``, ``on_unsubscribed``, the router's ``detours``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import jinja2
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from channels import registry
from channels.base import AcceptResult, Channel, ChannelContext
from gateway.contacts import Contacts
from gateway.conversations import Conversations
from gateway.dispatcher import Dispatcher
from gateway.envelope import BadRequest, Message, StatusUpdate, Unauthorized
from gateway.health import readiness
from gateway.metrics import INBOUND_ACCEPTED, INBOUND_DUPLICATES, INBOUND_REJECTED, STATUS_UPDATES
from gateway.openapi import routes as openapi_routes
from gateway.public_limits import middleware as public_limits
from gateway.rasa import RasaResponder
from gateway.ratelimit import RateLimiter
from gateway.responders import AckResponder, Responder
from gateway.router import Router
from gateway.settings import ROOT, Settings
from gateway.streams import Consumer, Streams, consumer_name

log = logging.getLogger(__name__)

GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway")

ALL_ROLES = frozenset({"web", "worker"})
# "worker" is the three background roles together; each may also run alone, any number of copies.
WORKER_ROLES = frozenset({"router", "dispatcher", "scheduler"})
ROUTER_GROUP = "router"
DISPATCHER_GROUP = "dispatcher"

# A background job of a role: run until the event is set (campaigns, the retention purge).
Job = Callable[[asyncio.Event], Awaitable[None]]


def template_env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(ROOT / "templates")),
        autoescape=jinja2.select_autoescape(["html", "html.j2", "xml"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


class Gateway:
    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        *,
        responder: Responder | None = None,
        roles: frozenset[str] = ALL_ROLES,
        channel_names: list[str] | None = None,
    ) -> None:
        self.settings = settings
        self.redis = redis
        if "worker" in roles:
            roles = roles | WORKER_ROLES
        if roles & WORKER_ROLES:
            roles = roles | {"worker"}  # channels open their senders for any background role
        self.roles = roles
        self.workers = bool(roles & WORKER_ROLES)
        self.streams = Streams(
            redis,
            shards=settings.stream_shards,
            maxlen=settings.stream_maxlen,
            dedup_ttl_s=settings.dedup_ttl_s,
            wait_replica_ms=settings.inbound_wait_replica_ms,
        )
        self.contacts = Contacts(redis)
        self.conversations = Conversations(redis)
        self.responder: Responder = responder or default_responder(settings, redis)
        self.router = Router(
            redis, self.streams, self.responder, self.contacts, self.conversations,
            flood=(settings.flood_per_min / 60, settings.flood_burst),
        )  # fmt: skip
        self.ctx = ChannelContext(
            settings=settings,
            redis=redis,
            templates=template_env(),
            accept=self.accept,
            status=self.status,
            roles=roles,
            unsubscribed=self._unsubscribed,
        )
        self.channels: dict[str, Channel] = {}
        for name in channel_names if channel_names is not None else list(registry.FACTORIES):
            channel = registry.load(name)(self.ctx)
            if channel is not None:
                self.channels[name] = channel
        self.router.joined_channels = frozenset(n for n, c in self.channels.items() if c.joins_replies)
        self.dispatcher = Dispatcher(settings, redis, self.streams, self.conversations, self.channels)
        # Hooks for the rooms above the core, filled by the composition root.
        self.jobs: list[tuple[str, str, Job]] = []  # (role that runs it, name, job)
        self.on_delivery_failed: list[Callable[[str], Awaitable[None]]] = []  # the outbound message's id
        self.on_unsubscribed: list[Callable[[str, str], Awaitable[None]]] = []  # (member number, via)
        self.on_status: list[Callable[[str, str], Awaitable[None]]] = []  # (outbound message id, status reached)
        self.consumers: list[Consumer] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # What channels are lent -------------------------------------------------------
    async def accept(self, msg: Message) -> AcceptResult:
        """Make an inbound message durable, once per provider id."""
        dedup = f"{msg.channel}:{msg.external_id or msg.id}"
        result = await self.streams.accept("in", msg, dedup)
        if result.new:
            INBOUND_ACCEPTED.labels(msg.channel).inc()
            # Counted in /metrics; the per-message trace is the router's "inbound handled" line.
            log.debug("inbound accepted", extra=msg.log_fields())
        else:
            INBOUND_DUPLICATES.labels(msg.channel).inc()
            log.info("inbound duplicate ignored", extra=msg.log_fields())
        return AcceptResult(msg_id=result.msg_id, duplicate=not result.new)

    async def status(self, update: StatusUpdate) -> None:
        STATUS_UPDATES.labels(update.channel, update.status).inc()
        moved = await self.conversations.apply_status(update)
        if moved:
            for status_hook in self.on_status:
                await status_hook(moved.partition(" ")[2], update.status)
        if moved and update.status in ("failed", "undelivered", "canceled"):  # a notice that failed: its fallback now
            for hook in self.on_delivery_failed:
                await hook(moved.partition(" ")[2])

    async def _unsubscribed(self, number: str, via: str) -> None:
        for hook in self.on_unsubscribed:
            await hook(number, via)

    # Workers --------------------------------------------------------------------------
    async def start_workers(self) -> None:
        """The background roles this process runs: the router (inbound stream), the dispatcher
        (outbound stream and its retries), and the jobs given for a role (the scheduler's campaigns and
        retention purge). Every copy of a role joins the same consumer groups or takes the same locks,
        so copies share work."""
        await self.streams.ensure_groups("in", ROUTER_GROUP)
        await self.streams.ensure_groups("out", DISPATCHER_GROUP)
        await self.streams.ensure_groups("bulk", DISPATCHER_GROUP)
        name = consumer_name(self.settings.consumer_name)
        self._stop.clear()
        readers = [
            (kind, group, handler)
            for role, kind, group, handler in (
                ("router", "in", ROUTER_GROUP, self.router.handle),
                ("dispatcher", "out", DISPATCHER_GROUP, self.dispatcher.handle),
                ("dispatcher", "bulk", DISPATCHER_GROUP, self.dispatcher.handle),
            )
            if role in self.roles
        ]
        for shard in range(self.settings.stream_shards):
            for kind, group, handler in readers:
                consumer = Consumer(
                    self.streams,
                    kind,
                    shard,
                    group,
                    name,
                    handler,
                    claim_idle_ms=self.settings.claim_idle_ms,
                    max_attempts=5 if kind == "in" else 3,
                )
                self.consumers.append(consumer)
                self._spawn(functools.partial(consumer.run, self._stop), f"consumer-{kind}-{shard}")
        if "dispatcher" in self.roles:
            self._spawn(functools.partial(self.dispatcher.run_retry_poller, self._stop), "retry-poller")
        for role, job_name, job in self.jobs:
            if role in self.roles:
                self._spawn(functools.partial(job, self._stop), job_name)

    def _spawn(self, factory: Callable[[], Awaitable[None]], name: str) -> None:
        """Run a worker; if it crashes (a bug, not a Redis outage) it is restarted, not lost."""

        async def guarded() -> None:
            while not self._stop.is_set():
                try:
                    await factory()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("worker crashed, restarting", extra={"worker": name})
                    await asyncio.sleep(1.0)

        self._tasks.append(asyncio.create_task(guarded(), name=name))

    async def stop_workers(self, grace_s: float = 20.0) -> None:
        """Stop reading new entries and finish the ones in hand (they are acked only once done)."""
        self._stop.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace_s)
            for task in pending:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*pending, return_exceptions=True)
        self._tasks.clear()
        self.consumers.clear()

    # Channels -------------------------------------------------------------------------
    async def start_channels(self) -> None:
        for channel in self.channels.values():
            await channel.start()

    async def stop_channels(self) -> None:
        for channel in reversed(list(self.channels.values())):
            try:
                await channel.stop()
            except Exception:
                log.exception("channel stop failed", extra={"channel": channel.name})

    # Web application -----------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.settings.max_body_bytes,
            middlewares=[error_middleware, public_limits(self.settings, RateLimiter(self.redis))],
        )
        app.on_response_prepare.append(security_headers)
        app[GATEWAY] = self
        routes = web.RouteTableDef()

        @routes.get("/healthz")
        async def healthz(request: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        @routes.get("/readyz")
        async def readyz(request: web.Request) -> web.Response:
            checks = await readiness(self.settings, self.redis)
            ok = all(v == "ok" for v in checks.values())
            return web.json_response(
                {"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503
            )

        @routes.get("/favicon.ico")
        async def favicon(request: web.Request) -> web.Response:
            return web.Response(status=204, headers={"Cache-Control": "max-age=86400"})

        @routes.get("/metrics")
        async def metrics(request: web.Request) -> web.Response:
            # Counters only, labelled by channel and reason, never by member or address; with
            # METRICS_TOKEN set, Prometheus must present it as a bearer token.
            token = self.settings.metrics_token
            given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if token and not hmac.compare_digest(given.encode(), token.encode()):
                return web.json_response({"error": "forbidden"}, status=401, headers={"WWW-Authenticate": "Bearer"})
            resp = web.Response(body=generate_latest())
            resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
            return resp

        app.add_routes(routes)
        for channel in self.channels.values():
            app.add_routes(channel.routes())
        app.add_routes(openapi_routes())
        app.cleanup_ctx.append(self._lifecycle)
        app.on_shutdown.append(self._close_sockets)
        return app

    async def _close_sockets(self, app: web.Application) -> None:
        """Shutting down: open WebSockets are closed first, so stopping does not wait on them."""
        for channel in self.channels.values():
            close = getattr(channel, "shutdown", None)
            if close is not None:
                await close()

    async def _lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        await self.start_channels()
        if self.workers:
            await self.start_workers()
        yield
        await self.stop_channels()
        await self.stop_workers()
        close = getattr(self.responder, "close", None)
        if close is not None:
            await close()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# A socket's handler lives as long as the socket, and so would the frame of every middleware around
# it: 10,000 web-chat sockets on one process make that memory count. These handle their own errors
# (their answer has started: a 4xx or 503 could not be given anyway), so the error middleware does
# not wrap them; the per-address limit still does (gateway/public_limits.py).
SELF_GUARDED_PATHS = frozenset({"/webchat/ws"})


@web.middleware
def error_middleware(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """Bad input is a 4xx with a reason; a Redis outage is a 503 the provider will retry."""
    if request.path in SELF_GUARDED_PATHS:
        return handler(request)
    return _guarded(request, handler)


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except BadRequest as exc:
        INBOUND_REJECTED.labels(_channel_of(request), "bad_request").inc()
        return web.json_response({"error": "bad_request", "detail": str(exc)[:200]}, status=400)
    except Unauthorized as exc:
        INBOUND_REJECTED.labels(_channel_of(request), "unauthorized").inc()
        return web.json_response({"error": "forbidden", "detail": str(exc)[:200]}, status=403)
    except RecursionError:
        # Request JSON goes through gateway/jsonbody.py, which refuses deep nesting; this is the net
        # under it (a form or header walked recursively by a library): the caller's input, not an outage.
        INBOUND_REJECTED.labels(_channel_of(request), "too_deep").inc()
        log.warning("request too deeply nested", extra={"path": request.path})
        return web.json_response({"error": "bad_request", "detail": "Requête trop imbriquée."}, status=400)
    except (RedisError, ConnectionError) as exc:
        log.error("storage unavailable", extra={"path": request.path, "error": type(exc).__name__})
        return web.json_response({"error": "unavailable"}, status=503, headers={"Retry-After": "5"})


# One policy for every response (pages, error pages, JSON): scripts, styles and connections only
# from our own origin ('self' covers our ws:/wss: too in CSP3), nothing inline, no plugins, no <base>,
# forms post back to us, and no site may frame a page of ours. The web chat does not need framing:
# the widget is a script the mutuelle's site loads, and runs under that site's own policy.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; manifest-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_SECURITY_HEADERS: dict[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
}


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer (pages, JSON, aiohttp's own 404/405/redirects, streamed CSV) carries the headers,
    set just before it starts (a signal, not a middleware: no frame kept for a socket's lifetime). A
    WebSocket's 101 carries none of them: they mean nothing there and would be kept per socket."""
    if response.status == 101:
        return
    for key, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)


def _channel_of(request: web.Request) -> str:
    first = request.path.strip("/").split("/", 1)[0]
    return first if first in registry.FACTORIES else "http"


def default_responder(settings: Settings, redis: Redis) -> Responder:
    if settings.responder == "rasa" and settings.rasa_url:
        return RasaResponder(settings.rasa_url, redis)
    return AckResponder()
