"""Twilio Messaging webhooks -> our envelope: pure functions, no I/O.

Twilio posts ``application/x-www-form-urlencoded`` parameters (see "Twilio's request to
your incoming message Webhook URL" and "Outbound Message Status in Status Callbacks" in
Twilio's documentation). Every value is read defensively: a parameter may be missing,
repeated or hold anything; garbage raises ``BadRequest``, never another exception.
"""

from __future__ import annotations

import re
from typing import Any

from channels.sms.keywords import match
from channels.twilio_webhook import (  # shared with WhatsApp
    Params,
    StatusEvent,
    attachments,
    e164,
    int_param,
    message_sid,
    param,
)
from channels.twilio_webhook import parse_status as twilio_parse_status
from gateway.envelope import BadRequest, Message, inbound

CHANNEL = "sms"
MAX_TEXT = 10_000  # Twilio bodies are at most 1,600 characters

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_SHORT_CODE = re.compile(r"[0-9]{3,8}")
# Addresses of other Twilio channels sharing a number's webhook: not SMS. WhatsApp is handed
# over to its channel when enabled (channels/sms/channel.py); the others are ignored here.
_OTHER_CHANNELS = ("whatsapp:", "messenger:", "rcs:", "fbm:", "gbm:", "apple:")


def parse_inbound(params: Params) -> list[Message]:
    """An incoming SMS/MMS webhook -> one message (none if it is not an SMS sender)."""
    sid = message_sid(params)
    sender = param(params, "From")
    if not sender:
        raise BadRequest("missing From")
    if sender.lower().startswith(_OTHER_CHANNELS):
        return []  # WhatsApp, RCS... on the same Twilio number: not this channel's
    number = e164(sender)
    if number is None:
        raise BadRequest("From is not a phone number")
    text = params.get("Body") or ""
    if len(text) > MAX_TEXT:
        raise BadRequest("Body too long")
    meta: dict[str, Any] = {}
    to = param(params, "To")
    if to and (_E164.fullmatch(to) or _SHORT_CODE.fullmatch(to)):
        meta["to"] = to
        # Replies go out from the number the member wrote to.
        meta["reply"] = {"twilio_from": to}
    for name, key in (("MessagingServiceSid", "messaging_service_sid"), ("FromCountry", "from_country")):
        value = param(params, name)
        if value:
            meta[key] = value[:64]
    segments = int_param(params, "NumSegments")
    if segments is not None:
        meta["num_segments"] = segments
    kind = "text"
    keyword = match(text, param(params, "OptOutType"))
    if keyword is not None:
        meta["keyword"] = {"word": keyword.word, "action": keyword.action, "confirmed_by": keyword.confirmed_by}
        if keyword.action in ("optout", "optin"):
            kind = keyword.action
    return [inbound(CHANNEL, f"tel:{number}", text, sid, attachments=attachments(params), meta=meta, kind=kind)]


def parse_status(params: Params) -> StatusEvent | None:
    """A status callback -> the update to record, or None when there is nothing to record."""
    return twilio_parse_status(params, CHANNEL, "tel:")
