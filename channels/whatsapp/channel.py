"""The WhatsApp channel (Twilio): signed webhooks in, Messages API out, the 24-hour window kept.

Routes:
* ``POST /whatsapp/twilio/inbound``: an incoming WhatsApp message (text or media). Answered 200
  with TwiML: empty, or the French confirmation of an opt-out/opt-in keyword.
* ``POST /whatsapp/twilio/status``: status callbacks of the messages we sent, ``read`` included.

The same messages posted to the SMS webhook are handed over here (``channels/sms/channel.py``).
Authenticity is SMS's: ``X-Twilio-Signature`` against ``PUBLIC_URL`` + path and query.

Sending: inside the member's customer-service window (24 h from their last message,
``inbound.window_open``) the text goes as it is; outside it WhatsApp takes only pre-approved
templates: a campaign notice goes by the Content API template ``TWILIO_WHATSAPP_NOTICE_CONTENT_SID``
(``ContentSid``, with the notice's text as variable 1), an agent's reply by the « reprise de contact »
template ``TWILIO_WHATSAPP_REPLY_CONTENT_SID`` the same way (without it the reply fails with a reason
the agents' console shows: what happened and what to do), anything else fails for good with
Twilio's 63016 reason, without calling Twilio. A free text Twilio refuses with 63016 (sent at the
window's edge) fails the same way, by the API's answer or the status callback; the failed notice
is then sent by the campaign's next channel.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, ClassVar

from aiohttp import web

from channels.base import RateLimit
from channels.twilio_api import OUTSIDE_WINDOW, OUTSIDE_WINDOW_REASON
from channels.twilio_channel import TwilioChannel, reply_sender
from channels.whatsapp.inbound import receive, receive_status, window_open
from channels.whatsapp.parse import CHANNEL, PREFIX
from gateway.envelope import Message, PermanentFailure, SendResult

log = logging.getLogger(__name__)

INBOUND_PATH = "/whatsapp/twilio/inbound"
STATUS_PATH = "/whatsapp/twilio/status"
PAIR_BURST = 5  # a bot's answer is a few messages in a row

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


# What the agents' console shows under an agent's reply that could not go (no « reprise de contact »
# template configured): why, and what to do instead.
AGENT_OUTSIDE_WINDOW_REASON = (
    "l'adhérent n'a pas écrit sur WhatsApp depuis plus de 24 h : WhatsApp n'accepte alors qu'un modèle "
    "approuvé, et aucun modèle de reprise de contact n'est configuré. Contactez l'adhérent par un autre "
    "canal (e-mail, SMS, appel)"
)


class OutsideWindow(PermanentFailure):
    """Free text to a member whose 24-hour window is closed, with no template for it (Twilio's 63016)."""

    def __init__(self, reason: str = OUTSIDE_WINDOW_REASON) -> None:
        super().__init__(reason, code=str(OUTSIDE_WINDOW))


class WhatsAppChannel(TwilioChannel):
    name: ClassVar[str] = CHANNEL
    inbound_path: ClassVar[str] = INBOUND_PATH
    status_path: ClassVar[str] = STATUS_PATH

    async def handle_inbound(self, request: web.Request) -> web.Response:
        return await receive(self.ctx, await self.signature.verified_params(request))

    async def handle_status(self, request: web.Request) -> web.Response:
        params = await self.signature.verified_params(request)
        return await receive_status(self.ctx, params, request.query.get("ref", ""))

    # Sending ----------------------------------------------------------------------------
    async def send(self, msg: Message) -> SendResult:
        scheme, _, to = msg.urn.partition(":")
        if scheme != CHANNEL or not _E164.fullmatch(to):
            raise PermanentFailure("adresse WhatsApp invalide (whatsapp:+numéro E.164 attendu)", code="invalid_urn")
        if not msg.text.strip():
            raise PermanentFailure("message WhatsApp vide", code="empty")
        settings = self.ctx.settings
        service = settings.twilio_whatsapp_messaging_service_sid or None
        sender = reply_sender(msg.meta, _E164) or settings.twilio_whatsapp_from
        kwargs: dict[str, Any] = {
            "to": PREFIX + to,
            "body": msg.text,
            "from_": PREFIX + sender,
            "messaging_service_sid": service,
            "status_callback": self._status_callback(msg),
        }
        template = ""
        if not await window_open(self.ctx.redis, msg.urn):
            by_agent = bool(msg.meta.get("agent"))
            if msg.meta.get("campaign"):
                template = settings.twilio_whatsapp_notice_content_sid
            elif by_agent:  # an agent writing back to a member who went quiet: « reprise de contact »
                template = settings.twilio_whatsapp_reply_content_sid
            if not template:
                raise OutsideWindow(AGENT_OUTSIDE_WINDOW_REASON if by_agent else OUTSIDE_WINDOW_REASON)
            # WhatsApp refuses a template variable with line breaks, tabs or runs of spaces.
            variables = {"1": " ".join(msg.text.split())}
            kwargs.update(content_sid=template, content_variables=json.dumps(variables, ensure_ascii=False))
        created = await self.sender.create(**kwargs)
        log.info(
            "whatsapp handed to twilio",
            extra={**msg.log_fields(), "template": bool(template), "sid": created.sid},
        )
        meta: dict[str, Any] = {"provider_status": created.status}
        if template:
            meta["template"] = template
        return SendResult(external_id=created.sid, status="sent", meta=meta)

    async def settle(self, msg: Message, since_ms: int) -> SendResult | None:
        """A send that may have reached Twilio: its result if Twilio has the message, else None."""
        # A template's body at Twilio is the template around our text (its whitespace folded).
        text = " ".join(msg.text.split())
        return await self._found_at_twilio(msg, to=msg.urn, body=text, since=since_ms / 1000, within=True)

    def rate_limits(self, msg: Message) -> list[RateLimit]:
        settings = self.ctx.settings
        return [
            RateLimit(CHANNEL, settings.whatsapp_rate_per_s),
            # Meta's pair rate limit: a business may not write to one member faster than about every 6 s.
            RateLimit(f"{CHANNEL}:{msg.urn}", settings.whatsapp_pair_per_min / 60, PAIR_BURST),
        ]
