"""Telegram Bot API updates -> our envelope. Pure, no I/O; garbage raises BadRequest."""

from __future__ import annotations

import json
from typing import Any

from telegram import Message as TgMessage
from telegram import Update

from gateway.envelope import Attachment, BadRequest, Message, inbound

CHANNEL = "telegram"
# Update kinds we accept and ignore on purpose (200 with a reason), Zulip style.
IGNORED = (
    "channel_post",
    "edited_channel_post",
    "callback_query",
    "inline_query",
    "chosen_inline_result",
    "my_chat_member",
    "chat_member",
    "chat_join_request",
    "poll",
    "poll_answer",
    "message_reaction",
    "message_reaction_count",
    "shipping_query",
    "pre_checkout_query",
)


def load(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("body is not JSON") from exc
    if not isinstance(data, dict):
        raise BadRequest("an update is a JSON object")
    update_id = data.get("update_id")
    if not isinstance(update_id, int) or isinstance(update_id, bool):
        raise BadRequest("update_id missing or not an integer")
    return data


def ignored_reason(data: dict[str, Any]) -> str | None:
    if "message" in data or "edited_message" in data:
        return None
    for kind in IGNORED:
        if kind in data:
            return f"ignored update kind: {kind}"
    return "unknown update kind"


def _attachments(tg: TgMessage) -> tuple[Attachment, ...]:
    out: list[Attachment] = []
    if tg.photo:
        best = max(tg.photo, key=lambda p: (p.width or 0) * (p.height or 0))
        out.append(Attachment(filename=None, content_type="image/jpeg", size=best.file_size, ref=best.file_id))
    if tg.document:
        doc = tg.document
        out.append(Attachment(filename=doc.file_name, content_type=doc.mime_type, size=doc.file_size, ref=doc.file_id))
    for media, ctype in ((tg.voice, "audio/ogg"), (tg.video, "video/mp4"), (tg.audio, "audio/mpeg")):
        if media is not None:
            out.append(
                Attachment(
                    content_type=getattr(media, "mime_type", None) or ctype, size=media.file_size, ref=media.file_id
                )
            )
    return tuple(out)


def _content(tg: TgMessage) -> str:
    for name in ("text", "photo", "document", "sticker", "location", "contact", "voice", "video", "audio"):
        if getattr(tg, name, None):
            return name
    return "other"


def parse_update(data: dict[str, Any]) -> list[Message]:
    """The messages of one update ([] for kinds we ignore)."""
    if ignored_reason(data) is not None:
        return []
    try:
        update = Update.de_json(data, None)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:  # e.g. a date past 2038
        raise BadRequest(f"malformed update: {type(exc).__name__}") from exc
    if update is None:
        raise BadRequest("empty update")
    tg = update.message or update.edited_message
    if tg is None or getattr(tg, "chat", None) is None:
        raise BadRequest("message without chat")
    # de_json does not check types: a text, caption or chat id of another type is garbage.
    text = tg.text or tg.caption or ""
    if not isinstance(text, str) or not isinstance(tg.chat.id, int) or isinstance(tg.chat.id, bool):
        raise BadRequest("malformed message: text, caption or chat id of the wrong type")
    kind = "edited" if update.edited_message is not None else "text"
    meta: dict[str, Any] = {
        "chat_id": tg.chat.id,
        "chat_type": tg.chat.type,
        "message_id": tg.message_id,
        "content": _content(tg),
    }
    if tg.from_user is not None and tg.from_user.language_code:
        meta["language"] = tg.from_user.language_code
    if kind == "text" and text.startswith("/start"):
        kind = "command"
        payload = text.partition(" ")[2].strip()
        if payload:
            meta["start_payload"] = payload[:64]
    return [
        inbound(
            CHANNEL,
            f"telegram:{tg.chat.id}",
            text,
            str(update.update_id),
            attachments=_attachments(tg),
            meta=meta,
            kind=kind,
        )
    ]
