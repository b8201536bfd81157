"""Twilio Messaging webhooks -> our envelope: pure functions, no I/O.

Twilio posts ``application/x-www-form-urlencoded`` parameters (see "Twilio's request to
your incoming message Webhook URL" and "Outbound Message Status in Status Callbacks" in
Twilio's documentation). Every value is read defensively: a parameter may be missing,
repeated or hold anything; garbage raises ``BadRequest``, never another exception.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

import phonenumbers
from multidict import MultiDict, MultiDictProxy

from channels.sms.keywords import match
from gateway.envelope import Attachment, BadRequest, Message, StatusUpdate, inbound

CHANNEL = "sms"
MAX_FIELDS = 200  # a real webhook has about 20 parameters (+2 per media)
MAX_MEDIA = 10  # Twilio's limit per MMS
MAX_TEXT = 10_000  # Twilio bodies are at most 1,600 characters

Params = MultiDict[str] | MultiDictProxy[str]

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_SID = re.compile(r"[A-Za-z0-9]{2,64}")
_SHORT_CODE = re.compile(r"[0-9]{3,8}")
# Addresses of other Twilio channels sharing a number's webhook: not SMS, ignored here.
_OTHER_CHANNELS = ("whatsapp:", "messenger:", "rcs:", "fbm:", "gbm:", "apple:")

# Twilio MessageStatus -> our OUT_STATES. Statuses of inbound messages (receiving,
# received) and unknown future values are ignored (answered 200, nothing recorded).
STATUS_MAP = {
    "accepted": "queued",  # a Messaging Service took it, no sender chosen yet
    "scheduled": "queued",
    "queued": "queued",
    "sending": "sending",
    "sent": "sent",
    "delivered": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
    "canceled": "canceled",  # a scheduled message cancelled: it will never go out (final, like failed)
    "read": "read",  # RCS / WhatsApp read receipts
}

# Frequent delivery error codes, explained in French for the agents' console.
ERROR_TEXTS = {
    "21610": "Le destinataire a répondu STOP : envoi refusé par Twilio",
    "21211": "Numéro de destinataire invalide",
    "21614": "Le numéro du destinataire n'est pas un mobile",
    "30003": "Téléphone du destinataire injoignable (éteint ou hors réseau)",
    "30004": "Message bloqué par le destinataire ou son opérateur",
    "30005": "Numéro du destinataire inconnu ou inexistant",
    "30006": "Numéro fixe ou opérateur ne recevant pas de SMS",
    "30007": "Message filtré par l'opérateur (suspicion de spam)",
    "30008": "Erreur inconnue de l'opérateur",
}


def form_params(body: bytes) -> MultiDict[str]:
    """Decode a form body. Never raises on bad bytes: they become U+FFFD, and the
    signature check then fails, since Twilio only sends valid UTF-8."""
    text = body.decode("utf-8", errors="replace")
    try:
        pairs = urllib.parse.parse_qsl(
            text, keep_blank_values=True, encoding="utf-8", errors="replace", max_num_fields=MAX_FIELDS
        )
    except ValueError as exc:  # too many fields
        raise BadRequest("too many form fields") from exc
    return MultiDict(pairs)


def _get(params: Params, *names: str) -> str:
    """The first non-empty value among ``names`` (Twilio keeps legacy aliases)."""
    for name in names:
        value = params.get(name)
        if value and value.strip():
            return value.strip()
    return ""


def e164(raw: str) -> str | None:
    """A sender number in E.164, or None if it is not a phone number."""
    raw = raw.strip()
    if _E164.fullmatch(raw):
        return raw
    if len(raw) > 32:
        return None
    try:
        number = phonenumbers.parse(raw, "FR")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def _message_sid(params: Params) -> str:
    sid = _get(params, "MessageSid", "SmsMessageSid", "SmsSid")
    if not sid:
        raise BadRequest("missing MessageSid")
    if not _SID.fullmatch(sid):
        raise BadRequest("malformed MessageSid")
    return sid


def _int(params: Params, name: str) -> int | None:
    raw = _get(params, name)
    return int(raw) if raw.isdigit() and len(raw) < 6 else None


def _attachments(params: Params) -> tuple[Attachment, ...]:
    declared = _int(params, "NumMedia")
    count = min(declared, MAX_MEDIA) if declared is not None else MAX_MEDIA
    found: list[Attachment] = []
    for i in range(count):
        url = _get(params, f"MediaUrl{i}")
        if not url.startswith(("https://", "http://")):
            continue  # missing or not a URL: the text still counts, the media is dropped
        content_type = _get(params, f"MediaContentType{i}")[:100] or None
        found.append(Attachment(content_type=content_type, ref=url[:2000]))
    return tuple(found)


def parse_inbound(params: Params) -> list[Message]:
    """An incoming SMS/MMS webhook -> one message (none if it is not an SMS sender)."""
    sid = _message_sid(params)
    sender = _get(params, "From")
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
    to = _get(params, "To")
    if to and (_E164.fullmatch(to) or _SHORT_CODE.fullmatch(to)):
        meta["to"] = to
        # Replies go out from the number the member wrote to.
        meta["reply"] = {"twilio_from": to}
    for name, key in (("MessagingServiceSid", "messaging_service_sid"), ("FromCountry", "from_country")):
        value = _get(params, name)
        if value:
            meta[key] = value[:64]
    segments = _int(params, "NumSegments")
    if segments is not None:
        meta["num_segments"] = segments
    kind = "text"
    keyword = match(text, _get(params, "OptOutType"))
    if keyword is not None:
        meta["keyword"] = {"word": keyword.word, "action": keyword.action, "confirmed_by": keyword.confirmed_by}
        if keyword.action in ("optout", "optin"):
            kind = keyword.action
    return [inbound(CHANNEL, f"tel:{number}", text, sid, attachments=_attachments(params), meta=meta, kind=kind)]


@dataclass(frozen=True, slots=True)
class StatusEvent:
    update: StatusUpdate
    recipient: str | None  # "tel:+33..." of the member, when given


def parse_status(params: Params) -> StatusEvent | None:
    """A status callback -> the update to record, or None when there is nothing to record."""
    sid = _message_sid(params)
    raw_status = _get(params, "MessageStatus", "SmsStatus").lower()
    if not raw_status:
        raise BadRequest("missing MessageStatus")
    status = STATUS_MAP.get(raw_status)
    if status is None:
        return None
    code = _get(params, "ErrorCode")
    error_code = code if code.isdigit() and code != "0" and len(code) <= 10 else None
    error_message = ERROR_TEXTS.get(error_code or "")
    if error_code and error_message is None and status in ("failed", "undelivered"):
        error_message = f"Erreur Twilio {error_code}"
    number = e164(_get(params, "To"))
    update = StatusUpdate(CHANNEL, sid, status, error_code, error_message)
    return StatusEvent(update, f"tel:{number}" if number else None)
