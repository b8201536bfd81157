"""Twilio's webhooks, shared by the SMS and WhatsApp channels: pure parsing helpers, the
signature check and the TwiML answer.

Twilio posts ``application/x-www-form-urlencoded`` parameters (see "Twilio's request to your
incoming message Webhook URL" and "Outbound Message Status in Status Callbacks" in Twilio's
documentation), for SMS and WhatsApp alike; WhatsApp addresses carry a ``whatsapp:`` prefix.
Every value is read defensively: garbage raises ``BadRequest``, never another exception.

Authenticity: ``X-Twilio-Signature`` is checked with twilio's ``RequestValidator`` against
``settings.public_url`` + the request's path and query as received, never a URL rebuilt
from Host or X-Forwarded-* headers (anyone can set those).
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

import phonenumbers
from aiohttp import web
from multidict import MultiDict, MultiDictProxy
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from gateway.envelope import Attachment, BadRequest, StatusUpdate, Unauthorized

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Twilio-Signature"
MAX_FIELDS = 200  # a real webhook has about 20 parameters (+2 per media)
MAX_MEDIA = 10  # Twilio's limit per message

Params = MultiDict[str] | MultiDictProxy[str]

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_SID = re.compile(r"[A-Za-z0-9]{2,64}")

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
    "63016": "Hors de la fenêtre de 24 h de WhatsApp : seul un modèle approuvé peut partir",
    "63024": "Destinataire WhatsApp invalide (pas de compte WhatsApp à ce numéro)",
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


def param(params: Params, *names: str) -> str:
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


def message_sid(params: Params) -> str:
    sid = param(params, "MessageSid", "SmsMessageSid", "SmsSid")
    if not sid:
        raise BadRequest("missing MessageSid")
    if not _SID.fullmatch(sid):
        raise BadRequest("malformed MessageSid")
    return sid


def int_param(params: Params, name: str) -> int | None:
    raw = param(params, name)
    return int(raw) if raw.isdigit() and len(raw) < 6 else None


def attachments(params: Params) -> tuple[Attachment, ...]:
    declared = int_param(params, "NumMedia")
    count = min(declared, MAX_MEDIA) if declared is not None else MAX_MEDIA
    found: list[Attachment] = []
    for i in range(count):
        url = param(params, f"MediaUrl{i}")
        if not url.startswith(("https://", "http://")):
            continue  # missing or not a URL: the text still counts, the media is dropped
        content_type = param(params, f"MediaContentType{i}")[:100] or None
        found.append(Attachment(content_type=content_type, ref=url[:2000]))
    return tuple(found)


def error_of(params: Params, status: str) -> tuple[str | None, str | None]:
    """A status callback's error code and its French explanation."""
    code = param(params, "ErrorCode")
    error_code = code if code.isdigit() and code != "0" and len(code) <= 10 else None
    error_message = ERROR_TEXTS.get(error_code or "")
    if error_code and error_message is None and status in ("failed", "undelivered"):
        error_message = f"Erreur Twilio {error_code}"
    return error_code, error_message


# The answer to almost every webhook, rendered once.
@dataclass(frozen=True, slots=True)
class StatusEvent:
    update: StatusUpdate
    recipient: str | None  # the member's address ("tel:+33…", "whatsapp:+33…"), when given


def parse_status(
    params: Params, channel: str, scheme: str, number_of: Callable[[str], str | None] = e164
) -> StatusEvent | None:
    """A status callback of a message we sent -> the update to record, or None when there is nothing to
    record; ``number_of`` reads the recipient's number from ``To`` and ``scheme`` prefixes it."""
    sid = message_sid(params)
    raw_status = param(params, "MessageStatus", "SmsStatus").lower()
    if not raw_status:
        raise BadRequest("missing MessageStatus")
    status = STATUS_MAP.get(raw_status)
    if status is None:
        return None
    error_code, error_message = error_of(params, status)
    number = number_of(param(params, "To"))
    update = StatusUpdate(channel, sid, status, error_code, error_message)
    return StatusEvent(update, f"{scheme}{number}" if number else None)


_EMPTY_TWIML = str(MessagingResponse().to_xml())


def twiml(reply: str | None = None) -> web.Response:
    if not reply:
        return web.Response(text=_EMPTY_TWIML, content_type="text/xml", charset="utf-8")
    response = MessagingResponse()
    response.message(reply)
    return web.Response(text=str(response.to_xml()), content_type="text/xml", charset="utf-8")


class SignatureCheck:
    """Checks ``X-Twilio-Signature`` of a webhook against ``public_url`` + the path as received."""

    def __init__(self, public_url: str, auth_token: str, channel: str) -> None:
        self.public_url = public_url.rstrip("/")
        self.validator = RequestValidator(auth_token)
        self.channel = channel

    async def verified_params(self, request: web.Request) -> MultiDict[str]:
        """The request's form parameters, once its Twilio signature is checked."""
        signature = request.headers.get(SIGNATURE_HEADER, "")
        if not signature:
            raise Unauthorized("missing X-Twilio-Signature")
        body = await request.read()  # over client_max_size: aiohttp answers 413
        try:
            params = form_params(body)
        except BadRequest as exc:  # e.g. thousands of fields: Twilio never sends that
            raise Unauthorized("form body cannot be verified") from exc
        url = self.public_url + request.raw_path
        if not self.validator.validate(url, params, signature):
            log.warning(
                f"{self.channel} webhook with a bad signature", extra={"channel": self.channel, "path": request.path}
            )
            raise Unauthorized("invalid X-Twilio-Signature")
        return params
