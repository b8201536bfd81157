"""The one message envelope that crosses the streams, and the small types around it.

Everything here is plain data: it serialises to a flat ``dict[str, str]`` for a Redis
stream entry and back, with no I/O.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar, Literal

import orjson

Direction = Literal["in", "out"]

# Delivery states of an outbound message, in the order they normally happen.
OUT_STATES = ("queued", "sending", "unknown", "sent", "delivered", "undelivered", "failed", "canceled", "read")
# "unknown": an attempt may have reached the provider (process killed, or timed out) and, the channel
# being at-most-once, it is not repeated; a later provider callback tells what happened.
# States after which a status callback may not move the message back.
FINAL_STATES = frozenset({"delivered", "undelivered", "failed", "canceled", "read"})
# "canceled" (Twilio): a scheduled message cancelled before it left; it never reaches the member, so
# for a campaign notice it counts as failed (the next channel is tried), but it is recorded as itself.


def new_id() -> str:
    """A sortable, unique message id (time-ordered UUID-like hex)."""
    return f"{time.time_ns():x}{uuid.uuid4().hex[:12]}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Attachment:
    """An attachment kept as metadata only (the bytes stay with the provider or are dropped)."""

    filename: str | None = None
    content_type: str | None = None
    size: int | None = None
    ref: str | None = None  # provider file id / URL, never fetched by the gateway


@dataclass(frozen=True, slots=True)
class Message:
    """A message in or out, on any channel.

    ``urn`` is the member's address on the channel: ``tel:+33612345678``,
    ``mailto:jeanne@example.fr``, ``telegram:3527065``, ``webchat:<session>``.
    ``external_id`` is the provider's id, the de-duplication key for inbound messages.
    ``meta`` holds channel specifics (e-mail subject and threading headers, Telegram
    chat id, SMS encoding...): string keys, JSON values.
    """

    id: str
    channel: str
    urn: str
    direction: Direction
    text: str
    external_id: str | None = None
    created_ms: int = field(default_factory=now_ms)
    attachments: tuple[Attachment, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    # Filled by the router once the contact and conversation are known.
    contact_id: str | None = None
    conversation_id: str | None = None
    # For replies: the inbound message this answers (drives idempotent reply ids).
    in_reply_to: str | None = None
    # Automated mail (auto-replies, bounces) is stored but never answered.
    automated: bool = False
    kind: str = "text"  # "text", "edited", "command", "callback_request", "status"
    # Whether the sender's address is proven: None = the channel vouches as usual (a provider's signed
    # webhook; e-mail without EMAIL_AUTHSERV_ID), True = proven (e-mail: DMARC or aligned SPF/DKIM passed
    # at the MX), False = not proven (e-mail that failed or lacks it): never linked to a member by address.
    sender_authentic: bool | None = None

    FIELDS: ClassVar[tuple[str, ...]] = (
        "id",
        "channel",
        "urn",
        "direction",
        "text",
        "external_id",
        "created_ms",
        "attachments",
        "meta",
        "contact_id",
        "conversation_id",
        "in_reply_to",
        "automated",
        "kind",
        "sender_authentic",
    )

    def to_json(self) -> str:
        data = {name: getattr(self, name) for name in self.FIELDS}
        data["attachments"] = [asdict(a) for a in self.attachments]
        return orjson.dumps(data).decode()  # UTF-8, compact: a stream entry is written per message

    @classmethod
    def from_json(cls, raw: str | bytes) -> Message:
        data = orjson.loads(raw)
        data["attachments"] = tuple(Attachment(**a) for a in data.get("attachments") or ())
        return cls(**{k: v for k, v in data.items() if k in cls.FIELDS})

    def with_(self, **changes: Any) -> Message:
        return replace(self, **changes)

    def log_fields(self) -> dict[str, Any]:
        """What may be logged about this message: never its text."""
        return {
            "msg_id": self.id,
            "channel": self.channel,
            "urn": mask_urn(self.urn),
            "direction": self.direction,
            "kind": self.kind,
        }


# Control characters (C0, DEL, C1) a stored text never keeps: NUL bytes and the like only break the
# stores, logs and screens downstream. Newline and tab stay; a carriage return becomes a newline.
_CONTROLS = {c: None for c in (*range(0x00, 0x20), *range(0x7F, 0xA0)) if c not in (0x09, 0x0A)}


def clean_text(text: str) -> str:
    """``text`` without control characters other than newline and tab (CRLF and CR become LF)."""
    if text.isprintable():
        return text
    return text.replace("\r\n", "\n").replace("\r", "\n").translate(_CONTROLS)


def inbound(
    channel: str,
    urn: str,
    text: str,
    external_id: str | None,
    *,
    attachments: tuple[Attachment, ...] = (),
    meta: dict[str, Any] | None = None,
    automated: bool = False,
    kind: str = "text",
    sender_authentic: bool | None = None,
) -> Message:
    """An inbound message, whatever its channel: the one place its text is cleaned of control characters."""
    return Message(
        id=new_id(),
        channel=channel,
        urn=urn,
        direction="in",
        text=clean_text(text),
        external_id=external_id,
        attachments=attachments,
        meta=meta or {},
        automated=automated,
        kind=kind,
        sender_authentic=sender_authentic,
    )


def mask_urn(urn: str) -> str:
    """Mask an address for logs: keep the scheme and a few characters only."""
    scheme, _, path = urn.partition(":")
    if not path:
        return "***"
    if scheme == "mailto":
        local, _, domain = path.partition("@")
        return f"mailto:{local[:1]}***@{domain}"
    if len(path) <= 4:
        return f"{scheme}:***"
    return f"{scheme}:***{path[-3:]}"


@dataclass(frozen=True, slots=True)
class SendResult:
    """What a provider said when it accepted an outbound message."""

    external_id: str | None = None
    status: str = "sent"
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A delivery status reported by a provider callback."""

    channel: str
    external_id: str
    status: str  # one of OUT_STATES
    error_code: str | None = None
    error_message: str | None = None
    ref: str | None = None  # "<conversation> <message>" carried by the callback URL, if the provider echoes it


class BadRequest(Exception):
    """The request could not be understood (answered 400)."""


class Unauthorized(Exception):
    """The request is not authentic (answered 403)."""


class SendError(Exception):
    """A send failed. ``retryable`` tells the dispatcher whether to try again."""

    retryable: ClassVar[bool] = False

    def __init__(self, reason: str, *, code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class ProviderUnavailable(SendError):
    retryable = True


class AmbiguousSend(ProviderUnavailable):
    """The request may have reached the provider (timed out or cut after it was sent): whether it
    is sent again depends on the channel's ``ambiguous`` policy."""


class Throttled(SendError):
    retryable = True

    def __init__(self, reason: str, *, retry_after: float | None = None, code: str | None = None) -> None:
        super().__init__(reason, code=code)
        self.retry_after = retry_after


class ContactOptedOut(SendError):
    """The contact asked not to receive messages on this channel; never retried."""


class PermanentFailure(SendError):
    """The provider refused the message for good (bad number, blocked bot...)."""
