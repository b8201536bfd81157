"""Twilio's WhatsApp webhooks -> our envelope: pure functions, no I/O.

WhatsApp messages reach the same kind of webhook as SMS (see "Twilio's request to your incoming
message Webhook URL"), with ``whatsapp:`` addresses (``From=whatsapp:+33639980012``) and a few
parameters of their own: ``ProfileName`` (the name the member shows on WhatsApp), ``WaId`` (their
WhatsApp id: the number without "+"), ``MessageType`` (text, image, document, audio, location,
button...), ``ButtonText``/``ButtonPayload`` for a quick-reply button. The member's address is
``whatsapp:+<E.164>``, linked to the member with that registered phone (``gateway/contacts.py``).

Opt-out words are those of SMS (``channels/sms/keywords.py``), but Twilio manages no WhatsApp
opt-out itself: the gateway records every keyword and confirms it in French. ``HELP``/``INFO`` are
ordinary words here (``info`` is French), left to the bot.
"""

from __future__ import annotations

import re
from typing import Any

from channels.sms.keywords import match
from channels.twilio_webhook import Params, StatusEvent, attachments, e164, message_sid, param
from channels.twilio_webhook import parse_status as twilio_parse_status
from gateway.envelope import BadRequest, Message, inbound

CHANNEL = "whatsapp"
PREFIX = "whatsapp:"
MAX_TEXT = 10_000  # WhatsApp texts are at most 4,096 characters

OPT_OUT_REPLY = (
    "Votre mutuelle : vous ne recevrez plus nos messages WhatsApp. Pour les recevoir de nouveau, répondez START."
)
OPT_IN_REPLY = (
    "Votre mutuelle : vous recevrez de nouveau nos messages WhatsApp. Pour ne plus les recevoir, répondez STOP."
)

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_WA_ID = re.compile(r"[1-9][0-9]{6,14}")
_TYPE = re.compile(r"[a-z_]{1,32}")


def is_whatsapp(address: str) -> bool:
    return address.strip().lower().startswith(PREFIX)


def number_of(address: str) -> str | None:
    """``whatsapp:+33639980012`` -> ``+33639980012`` (None if it is not a WhatsApp phone address)."""
    if not is_whatsapp(address):
        return None
    return e164(address.strip()[len(PREFIX) :])


def parse_inbound(params: Params) -> list[Message]:
    """An incoming WhatsApp message -> one message (none if the sender is not a WhatsApp address)."""
    sid = message_sid(params)
    sender = param(params, "From")
    if not sender:
        raise BadRequest("missing From")
    if not is_whatsapp(sender):
        return []
    number = number_of(sender)
    wa_id = param(params, "WaId")
    if number is None and _WA_ID.fullmatch(wa_id):
        number = "+" + wa_id
    if number is None:
        raise BadRequest("From is not a WhatsApp phone number")
    message_type = param(params, "MessageType").lower()
    text = params.get("Body") or ""
    if not text and message_type == "button":
        text = param(params, "ButtonText")
    if len(text) > MAX_TEXT:
        raise BadRequest("Body too long")
    meta: dict[str, Any] = {}
    if _WA_ID.fullmatch(wa_id):
        meta["wa_id"] = wa_id
    profile = param(params, "ProfileName")
    if profile:
        meta["profile_name"] = profile[:100]
    if _TYPE.fullmatch(message_type):
        meta["message_type"] = message_type
    payload = param(params, "ButtonPayload")
    if payload:
        meta["button_payload"] = payload[:256]
    to = number_of(param(params, "To"))
    if to:
        meta["to"] = to
        meta["reply"] = {"twilio_from": to}  # replies go out from the number the member wrote to
    service = param(params, "MessagingServiceSid")
    if service:
        meta["messaging_service_sid"] = service[:64]
    kind = "text"
    keyword = match(text)
    if keyword is not None and keyword.action in ("optout", "optin", "optin_if_opted_out"):
        meta["keyword"] = {"word": keyword.word, "action": keyword.action, "confirmed_by": "gateway"}
        if keyword.action in ("optout", "optin"):
            kind = keyword.action
    return [inbound(CHANNEL, f"{PREFIX}{number}", text, sid, attachments=attachments(params), meta=meta, kind=kind)]


def parse_status(params: Params) -> StatusEvent | None:
    """A status callback of a WhatsApp message we sent (queued, sent, delivered, read, failed...)."""
    return twilio_parse_status(params, CHANNEL, PREFIX, number_of)
