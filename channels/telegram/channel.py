"""The Telegram channel (python-telegram-bot): webhook in, Bot API ``sendMessage`` out.

Authenticity: the ``X-Telegram-Bot-Api-Secret-Token`` header, compared in constant time.
Its value is ``TELEGRAM_SECRET_TOKEN`` or, when unset, one derived from ``SECRET_KEY``
(``webhook_secret``; pass it to ``setWebhook``). De-duplication key: ``update_id``.
Rate limits (Telegram's FAQ): about 30 messages/s overall, 1/s per private chat, 20/min
per group (negative chat ids). Texts over 4096 characters are split.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
from typing import ClassVar

from aiohttp import web
from telegram import Bot
from telegram.error import BadRequest as TgBadRequest
from telegram.error import Forbidden, InvalidToken, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.request import HTTPXRequest

from channels.base import ChannelBase, ChannelContext, RateLimit
from channels.telegram.parse import CHANNEL, ignored_reason, load, parse_update
from gateway import keys
from gateway.envelope import (
    ContactOptedOut,
    Message,
    PermanentFailure,
    ProviderUnavailable,
    SendResult,
    Throttled,
    Unauthorized,
)

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/telegram/webhook"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
MAX_TEXT = 4096


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Cut a long text into pieces Telegram accepts, at line or word ends where possible."""
    pieces: list[str] = []
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit)
        if cut < limit // 2:
            cut = text.rfind(" ", 0, limit)
        if cut < limit // 2:
            cut = limit
        pieces.append(text[:cut])
        text = text[cut:].lstrip("\n ")
    pieces.append(text)
    return [p for p in pieces if p] or [""]


class TelegramChannel(ChannelBase):
    name: ClassVar[str] = CHANNEL

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        s = ctx.settings
        self.webhook_secret = (
            s.telegram_secret_token or hmac.new(s.secret_key.encode(), b"telegram-webhook", hashlib.sha256).hexdigest()
        )
        self.bot = Bot(
            s.telegram_token,
            base_url=s.telegram_api_base or "https://api.telegram.org/bot",
            request=HTTPXRequest(connection_pool_size=32, read_timeout=s.send_timeout_s, write_timeout=10.0),
        )

    async def stop(self) -> None:
        await self.bot.shutdown()

    def routes(self) -> web.RouteTableDef:
        routes = web.RouteTableDef()

        @routes.post(WEBHOOK_PATH)
        async def webhook(request: web.Request) -> web.Response:
            given = request.headers.get(SECRET_HEADER, "")
            if not hmac.compare_digest(given.encode(), self.webhook_secret.encode()):
                raise Unauthorized("bad or missing secret token")
            data = load(await request.read())
            reason = ignored_reason(data)
            if reason:
                return web.json_response({"ok": True, "ignored": reason})
            for msg in parse_update(data):
                await self.receive(msg)
            return web.json_response({"ok": True})

        return routes

    async def receive(self, msg: Message) -> None:
        """Accept one parsed message or event. A chat that blocked the bot (or removed it from its
        group) is on the channel's opt-out list, which the dispatcher honours (nothing is sent, a
        campaign notice goes by its next channel), until the member unblocks it or writes again."""
        event = msg.meta.get("event")
        if event == "blocked":
            await self.ctx.redis.sadd(keys.opt_out(CHANNEL), msg.urn)
        result = await self.ctx.accept(msg)
        if (event == "unblocked" or not msg.automated) and not result.duplicate:
            await self.ctx.redis.srem(keys.opt_out(CHANNEL), msg.urn)
        if event in ("blocked", "unblocked"):
            log.info(f"telegram chat {event} the bot", extra={**msg.log_fields(), "duplicate": result.duplicate})

    def rate_limits(self, msg: Message) -> list[RateLimit]:
        s = self.ctx.settings
        chat = msg.urn.removeprefix("telegram:")
        per_chat = (
            RateLimit(f"telegram:chat:{chat}", 20 / 60, burst=3)
            if chat.startswith("-")
            else RateLimit(f"telegram:chat:{chat}", s.telegram_chat_rate_per_s, burst=3)
        )
        return [RateLimit("telegram", s.telegram_rate_per_s, burst=30), per_chat]

    async def send(self, msg: Message) -> SendResult:
        chat_id = msg.urn.removeprefix("telegram:")
        ids: list[int] = []
        try:
            for piece in split_text(msg.text):
                sent = await self.bot.send_message(chat_id=chat_id, text=piece)
                ids.append(sent.message_id)
        except RetryAfter as exc:
            wait = exc.retry_after
            seconds = wait.total_seconds() if isinstance(wait, dt.timedelta) else float(wait)
            raise Throttled("Telegram demande de patienter", retry_after=seconds, code="429") from exc
        except Forbidden as exc:
            raise ContactOptedOut("l'adhérent a bloqué le bot", code="403") from exc
        except (TimedOut, NetworkError) as exc:
            if isinstance(exc, TgBadRequest):
                raise PermanentFailure(f"refus de Telegram : {exc.message}", code="400") from exc
            raise ProviderUnavailable(f"Telegram injoignable : {type(exc).__name__}") from exc
        except InvalidToken as exc:
            raise ProviderUnavailable("jeton Telegram refusé", code="401") from exc
        except TelegramError as exc:
            raise PermanentFailure(f"refus de Telegram : {exc.message}") from exc
        return SendResult(
            external_id=f"{chat_id}:{ids[0]}", status="sent", meta={"parts": len(ids)} if len(ids) > 1 else {}
        )
