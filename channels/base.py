"""The small surface every channel implements, and what the gateway lends it.

A channel never talks to the router, the bot or the dispatcher directly: its webhook
handlers call ``ctx.accept`` (durable, de-duplicated) or ``ctx.status`` (delivery
callbacks), and the dispatcher calls its ``send``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from aiohttp import web

from gateway.envelope import Message, SendResult, StatusUpdate

if TYPE_CHECKING:
    from jinja2 import Environment
    from redis.asyncio import Redis

    from gateway.settings import Settings


@dataclass(frozen=True, slots=True)
class AcceptResult:
    msg_id: str  # id of the stored message (the first one, for a redelivery)
    duplicate: bool


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``per_second`` sends on ``bucket`` (shared by every process through Redis)."""

    bucket: str
    per_second: float
    burst: int = 1


@dataclass(slots=True)
class ChannelContext:
    """Shared resources passed to each channel; nothing global."""

    settings: Settings
    redis: Redis
    templates: Environment
    # Accept an inbound message: de-duplicated on (channel, external_id), durable once it returns.
    accept: Callable[[Message], Awaitable[AcceptResult]]
    # Record a provider's delivery status for an outbound message.
    status: Callable[[StatusUpdate], Awaitable[None]]
    # What this process does: "web" (HTTP routes, SMTP listener, web-chat sockets) and/or
    # "worker" (router and dispatcher: the channel's send). start() opens only what its roles need.
    roles: frozenset[str] = frozenset({"web", "worker"})
    # Told when a member declines information e-mails (member number, via): the product audits it.
    unsubscribed: Callable[[str, str], Awaitable[None]] | None = None


class Channel(Protocol):
    name: ClassVar[str]  # "sms": also the URN scheme's owner and the tests folder
    # The replies to one inbound message go as one message (e-mail: one reply mail per bot turn).
    joins_replies: ClassVar[bool]

    def routes(self) -> web.RouteTableDef:
        """HTTP routes (webhooks, pages); empty when the channel has none."""
        ...

    async def start(self) -> None:
        """Open long-lived resources (listeners, clients). Called once, after routes are mounted."""
        ...

    async def stop(self) -> None:
        """Close what ``start`` opened; accepted messages must already be durable."""
        ...

    async def send(self, msg: Message) -> SendResult:
        """Send one outbound message. Raises a ``SendError`` subclass on failure."""
        ...

    def rate_limits(self, msg: Message) -> list[RateLimit]:
        """Buckets this send counts against (global, per chat...)."""
        ...


class ChannelBase:
    """Defaults for the optional parts of the surface."""

    name: ClassVar[str] = ""
    # What to do with a send that may have reached the provider (killed mid-request, timed out):
    # "at_least_once" sends it again (e-mail: same Message-ID), "at_most_once" does not and waits
    # for the provider's callback (SMS: Twilio has no idempotency key; its callback names our message).
    ambiguous: ClassVar[str] = "at_least_once"
    joins_replies: ClassVar[bool] = False

    def __init__(self, ctx: ChannelContext) -> None:
        self.ctx = ctx

    def routes(self) -> web.RouteTableDef:
        return web.RouteTableDef()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def rate_limits(self, msg: Message) -> list[RateLimit]:
        return []


ChannelFactory = Callable[[ChannelContext], Channel | None]
