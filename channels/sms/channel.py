"""The SMS channel (Twilio): signed webhooks in, Messages API out.

Routes:
* ``POST /sms/twilio/inbound``: an incoming SMS/MMS. Answered 200 with TwiML: empty, or a
  French confirmation for an opt-out/opt-in keyword Twilio does not confirm itself.
* ``POST /sms/twilio/status``: delivery status callbacks of the messages we sent.

Authenticity: ``X-Twilio-Signature`` is checked with twilio's ``RequestValidator``
against ``settings.public_url`` + the request's path and query as received, never a URL
rebuilt from Host or X-Forwarded-* headers (anyone can set those). Behind a proxy,
``PUBLIC_URL`` is the URL Twilio is configured with, minus the path: with a proxy that
strips a prefix, include the prefix (``https://gw.mutuelle.example/passerelle``).
Missing or wrong signature -> 403; unparsable but authentic -> 400.

Opt-out state lives in the Redis set ``keys.opt_out("sms")`` (the dispatcher skips its
members). An opt-out is recorded *before* the message is accepted, and again on a
redelivery (it is idempotent and errs on the safe side); an opt-in is applied only once
the message is accepted as new, so a stale redelivered START never undoes a later STOP.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from typing import Any, ClassVar

from aiohttp import web
from multidict import MultiDict

from channels.base import RateLimit
from channels.sms.encoding import sms_info
from channels.sms.keywords import OPT_IN_REPLY, OPT_OUT_REPLY
from channels.sms.parse import CHANNEL, parse_inbound, parse_status
from channels.twilio_api import UNSUBSCRIBED
from channels.twilio_channel import TwilioChannel, reply_sender
from channels.twilio_webhook import param, twiml
from gateway import keys
from gateway.envelope import Message, PermanentFailure, SendResult

log = logging.getLogger(__name__)

INBOUND_PATH = "/sms/twilio/inbound"
STATUS_PATH = "/sms/twilio/status"
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_SENDER = re.compile(r"\+[1-9][0-9]{6,14}|[0-9]{3,8}")


class SmsChannel(TwilioChannel):
    name: ClassVar[str] = CHANNEL
    inbound_path: ClassVar[str] = INBOUND_PATH
    status_path: ClassVar[str] = STATUS_PATH

    async def verified_params(self, request: web.Request) -> MultiDict[str]:
        """The request's form parameters, once its Twilio signature is checked."""
        return await self.signature.verified_params(request)

    async def handle_inbound(self, request: web.Request) -> web.Response:
        params = await self.verified_params(request)
        if self.ctx.settings.whatsapp_enabled and param(params, "From").lower().startswith("whatsapp:"):
            # WhatsApp posted to the SMS webhook (one number, one webhook at Twilio): its channel takes it.
            from channels.whatsapp.inbound import receive  # here: channels.whatsapp imports channels.sms

            return await receive(self.ctx, params)
        messages = parse_inbound(params)
        if not messages:
            log.info("sms webhook ignored: not an SMS sender", extra={"channel": CHANNEL})
        reply: str | None = None
        for msg in messages:
            msg = await self._resolve_conditional_optin(msg)
            if msg.kind == "optout":
                await self.ctx.redis.sadd(keys.opt_out(CHANNEL), msg.urn)
            result = await self.ctx.accept(msg)
            if msg.kind == "optin" and not result.duplicate:
                await self.ctx.redis.srem(keys.opt_out(CHANNEL), msg.urn)
            if msg.kind in ("optout", "optin"):
                log.info(f"sms {msg.kind} recorded", extra={**msg.log_fields(), "duplicate": result.duplicate})
                if _keyword(msg).get("confirmed_by") == "gateway":
                    reply = OPT_OUT_REPLY if msg.kind == "optout" else OPT_IN_REPLY
        return twiml(reply)

    async def _resolve_conditional_optin(self, msg: Message) -> Message:
        """A "YES" is an opt-in only for a number that opted out (as at Twilio)."""
        keyword = _keyword(msg)
        if keyword.get("action") != "optin_if_opted_out":
            return msg
        if await self.ctx.redis.sismember(keys.opt_out(CHANNEL), msg.urn):
            return msg.with_(kind="optin")
        return msg

    async def handle_status(self, request: web.Request) -> web.Response:
        params = await self.verified_params(request)
        if self.ctx.settings.whatsapp_enabled and param(params, "To").lower().startswith("whatsapp:"):
            from channels.whatsapp.inbound import receive_status

            return await receive_status(self.ctx, params, request.query.get("ref", ""))
        event = parse_status(params)
        if event is None:
            log.info("sms status callback ignored", extra={"channel": CHANNEL})
            return twiml()
        update = event.update
        ref = request.query.get("ref", "")
        if ref and len(ref) <= 300:
            update = replace(update, ref=ref)
        if update.error_code == str(UNSUBSCRIBED) and event.recipient:
            # Twilio refused the send because the member opted out there: mirror it.
            await self.ctx.redis.sadd(keys.opt_out(CHANNEL), event.recipient)
        await self.ctx.status(update)
        return twiml()

    # Sending ----------------------------------------------------------------------------
    async def send(self, msg: Message) -> SendResult:
        scheme, _, to = msg.urn.partition(":")
        if scheme != "tel" or not _E164.fullmatch(to):
            raise PermanentFailure("adresse SMS invalide (numéro E.164 attendu)", code="invalid_urn")
        if not msg.text.strip():
            raise PermanentFailure("SMS vide", code="empty")
        settings = self.ctx.settings
        service = settings.twilio_messaging_service_sid or None
        from_ = None if service else (reply_sender(msg.meta, _SENDER) or settings.twilio_from)
        info = sms_info(msg.text)
        created = await self.sender.create(
            to=to,
            body=msg.text,
            from_=from_,
            messaging_service_sid=service,
            status_callback=self._status_callback(msg),
        )
        log.info(
            "sms handed to twilio",
            extra={**msg.log_fields(), "encoding": info.encoding, "segments": info.segments, "sid": created.sid},
        )
        meta: dict[str, Any] = {
            "encoding": info.encoding,
            "segments": info.segments,
            "provider_status": created.status,
        }
        # "sent" = handed to the provider; Twilio's callbacks then report the rest.
        return SendResult(external_id=created.sid, status="sent", meta=meta)

    async def settle(self, msg: Message, since_ms: int) -> SendResult | None:
        """A send that may have reached Twilio: its result if Twilio has the message, else None."""
        return await self._found_at_twilio(msg, to=msg.urn.partition(":")[2], body=msg.text, since=since_ms / 1000)

    def rate_limits(self, msg: Message) -> list[RateLimit]:
        return [RateLimit("sms", self.ctx.settings.sms_rate_per_s)]



def _keyword(msg: Message) -> dict[str, Any]:
    value = msg.meta.get("keyword")
    return value if isinstance(value, dict) else {}
