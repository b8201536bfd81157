"""What the WhatsApp channel does with a verified Twilio webhook, whichever route it came by.

Twilio posts WhatsApp messages to the webhook of the sender configured at Twilio: our own
route (``/whatsapp/twilio/inbound``), or the SMS route when one number serves both; the SMS
channel then hands the (already verified) parameters over to ``receive``.

The customer-service window: each new inbound message opens (or extends) WhatsApp's 24-hour window,
kept in Redis (``keys.whatsapp_window``, shared by every process); inside it free text may be
sent, outside it only an approved template.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from aiohttp import web
from redis.asyncio import Redis

from channels.base import ChannelContext
from channels.twilio_api import OUTSIDE_WINDOW
from channels.twilio_webhook import Params, twiml
from channels.whatsapp.parse import CHANNEL, OPT_IN_REPLY, OPT_OUT_REPLY, parse_inbound, parse_status
from gateway import keys
from gateway.envelope import Message, now_ms

log = logging.getLogger(__name__)

WINDOW_MS = 24 * 3600 * 1000
# A send decided this close to the window's end may reach WhatsApp after it closed: use a template.
WINDOW_MARGIN_MS = 10 * 60 * 1000


async def open_window(redis: Redis, urn: str, at_ms: int | None = None) -> None:
    """The member wrote at ``at_ms``: the window runs 24 h from then."""
    at = at_ms if at_ms is not None else now_ms()
    await redis.set(keys.whatsapp_window(urn), str(at), px=max(1, at + WINDOW_MS - now_ms()))


async def window_open(redis: Redis, urn: str) -> bool:
    """Whether free text may still go to ``urn`` (with a margin before the window closes)."""
    raw = await redis.get(keys.whatsapp_window(urn))
    try:
        last = int(raw) if raw is not None else None
    except ValueError:
        return False
    return last is not None and now_ms() - last < WINDOW_MS - WINDOW_MARGIN_MS


async def close_window(redis: Redis, urn: str) -> None:
    await redis.delete(keys.whatsapp_window(urn))


def _keyword(msg: Message) -> dict[str, Any]:
    value = msg.meta.get("keyword")
    return value if isinstance(value, dict) else {}


async def receive(ctx: ChannelContext, params: Params) -> web.Response:
    """An incoming WhatsApp message (signature already checked): accepted once, answered with TwiML."""
    messages = parse_inbound(params)
    if not messages:
        log.info("whatsapp webhook ignored: not a WhatsApp sender", extra={"channel": CHANNEL})
    reply: str | None = None
    for msg in messages:
        if _keyword(msg).get("action") == "optin_if_opted_out" and await ctx.redis.sismember(
            keys.opt_out(CHANNEL), msg.urn
        ):
            msg = msg.with_(kind="optin")  # "YES" re-subscribes only a member who opted out
        if msg.kind == "optout":
            await ctx.redis.sadd(keys.opt_out(CHANNEL), msg.urn)  # before accepting: errs on the safe side
        result = await ctx.accept(msg)
        if not result.duplicate:
            await open_window(ctx.redis, msg.urn)
            if msg.kind == "optin":
                await ctx.redis.srem(keys.opt_out(CHANNEL), msg.urn)
        if msg.kind in ("optout", "optin"):
            log.info(f"whatsapp {msg.kind} recorded", extra={**msg.log_fields(), "duplicate": result.duplicate})
            reply = OPT_OUT_REPLY if msg.kind == "optout" else OPT_IN_REPLY
    return twiml(reply)


async def receive_status(ctx: ChannelContext, params: Params, ref: str = "") -> web.Response:
    """A status callback of a WhatsApp message (signature already checked)."""
    event = parse_status(params)
    if event is None:
        log.info("whatsapp status callback ignored", extra={"channel": CHANNEL})
        return twiml()
    update = event.update
    if ref and len(ref) <= 300:
        update = replace(update, ref=ref)
    if update.error_code == str(OUTSIDE_WINDOW) and event.recipient:
        # WhatsApp says the window is closed (our clock or a lost inbound said otherwise): templates from now.
        await close_window(ctx.redis, event.recipient)
    await ctx.status(update)
    return twiml()
