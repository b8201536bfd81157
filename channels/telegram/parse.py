"""Telegram Bot API updates -> our envelope. Pure, no I/O; garbage raises BadRequest.

Read defensively, field by field (Zulip style), rather than through python-telegram-bot's
``Update.de_json``: that one refuses whole messages for fields the product never uses (a ``from``
without ``is_bot`` from an old Bot API, a photo without ``file_unique_id``) and recurses into every
nested object. Here only what the product uses is read, with its type checked; the rest is ignored.

- A member's message (text, caption, photo, document, voice, video, audio, sticker, location,
  venue, contact), new or edited, is a message the bot answers (``kind`` text, edited or command).
- Everything else a chat shows (service messages: pinned, members in or out, title or photo
  changed...; dice, stories, games, polls, live-location moves, reactions, and any content a newer
  Bot API adds) is stored as an event (``kind`` "event", ``automated``): visible to agents in the
  conversation, never answered.
- ``my_chat_member``: the member blocked the bot (or removed it from a group) or unblocked it; an
  event whose ``meta["event"]`` is "blocked" or "unblocked" (the channel stops or restores sends).
"""

from __future__ import annotations

from typing import Any

from gateway import jsonbody
from gateway.envelope import Attachment, BadRequest, Message, inbound

CHANNEL = "telegram"
# Update kinds we accept and ignore on purpose (200 with a reason), Zulip style: none concerns a
# member's conversation with the bot (channels, inline mode, payments, anonymous counts).
IGNORED = (
    "channel_post",
    "edited_channel_post",
    "business_connection",
    "business_message",
    "edited_business_message",
    "deleted_business_messages",
    "callback_query",
    "inline_query",
    "chosen_inline_result",
    "chat_member",
    "chat_join_request",
    "chat_boost",
    "removed_chat_boost",
    "poll",
    "poll_answer",
    "message_reaction_count",
    "shipping_query",
    "pre_checkout_query",
    "purchased_paid_media",
)
MESSAGE_KINDS = ("message", "edited_message")
EVENT_KINDS = ("my_chat_member", "message_reaction")

# Content a member sends, in the order ``meta["content"]`` names it.
MEMBER_CONTENT = (
    "text", "photo", "document", "sticker", "location", "venue", "contact", "voice", "video", "audio",
    "video_note", "animation",
)  # fmt: skip
# What an event says to the agents who read the conversation, by the message field that marks it.
EVENT_TEXTS: dict[str, str] = {
    "pinned_message": "Un message a été épinglé.",
    "new_chat_members": "Nouveau membre dans le groupe.",
    "new_chat_member": "Nouveau membre dans le groupe.",
    "new_chat_participant": "Nouveau membre dans le groupe.",  # Bot API before 2016
    "left_chat_member": "Un membre a quitté le groupe.",
    "left_chat_participant": "Un membre a quitté le groupe.",
    "new_chat_title": "Le titre du groupe a changé.",
    "new_chat_photo": "La photo du groupe a changé.",
    "delete_chat_photo": "La photo du groupe a été supprimée.",
    "group_chat_created": "Groupe créé.",
    "supergroup_chat_created": "Groupe créé.",
    "migrate_to_chat_id": "Le groupe est devenu un supergroupe.",
    "migrate_from_chat_id": "Le groupe est devenu un supergroupe.",
    "message_auto_delete_timer_changed": "La suppression automatique des messages a changé.",
    "dice": "Un dé a été lancé.",
    "story": "Une story a été partagée.",
    "game": "Un jeu a été partagé.",
    "poll": "Un sondage a été partagé.",
    "giveaway": "Un concours a été partagé.",
    "forum_topic_created": "Un sujet a été créé.",
    "video_chat_started": "Un appel vidéo a commencé.",
    "video_chat_ended": "Un appel vidéo s'est terminé.",
}
OTHER_EVENT_TEXT = "Événement Telegram sans texte (non pris en charge)."
BLOCKED_TEXT = (
    "L'adhérent a bloqué le bot Telegram (ou l'a retiré du groupe) : plus aucun message ne lui est "
    "envoyé sur Telegram jusqu'à ce qu'il écrive de nouveau."
)
UNBLOCKED_TEXT = "L'adhérent a débloqué le bot Telegram : les messages lui sont de nouveau envoyés."
# my_chat_member statuses of the bot: out of the chat (blocked in a private chat, removed from a group).
OUT_STATUSES = frozenset({"kicked", "left"})
IN_STATUSES = frozenset({"member", "administrator", "restricted", "creator"})


def load(body: bytes) -> dict[str, Any]:
    """The update object (the shared JSON reader's limits), with an integer ``update_id``."""
    data = jsonbody.loads_object(body)
    if not _is_int(data.get("update_id")):
        raise BadRequest("update_id absent ou non entier.")
    return data


def ignored_reason(data: dict[str, Any]) -> str | None:
    if any(kind in data for kind in (*MESSAGE_KINDS, *EVENT_KINDS)):
        return None
    for kind in IGNORED:
        if kind in data:
            return f"ignored update kind: {kind}"
    return "unknown update kind"


def parse_update(data: dict[str, Any]) -> list[Message]:
    """The messages and events of one update ([] for kinds we ignore)."""
    if ignored_reason(data) is not None:
        return []
    update_id = str(data["update_id"]) if _is_int(data.get("update_id")) else None
    if update_id is None:
        raise BadRequest("update_id absent ou non entier.")
    for kind in MESSAGE_KINDS:
        if kind in data:
            return [_message(_object(data, kind), update_id, edited=kind == "edited_message")]
    if "my_chat_member" in data:
        found = _membership(_object(data, "my_chat_member"), update_id)
        return [found] if found is not None else []
    return [_reaction(_object(data, "message_reaction"), update_id)]


def _message(tg: dict[str, Any], update_id: str, *, edited: bool) -> Message:
    chat_id, chat_type = _chat(tg)
    text = tg.get("text")
    if text is None:
        text = tg.get("caption")
    if text is not None and not isinstance(text, str):
        raise BadRequest("Texte ou légende du message d'un type inattendu.")
    text = text or ""
    content = next((name for name in MEMBER_CONTENT if tg.get(name)), None)
    meta: dict[str, Any] = {"chat_id": chat_id, "chat_type": chat_type, "content": content or "event"}
    if _is_int(tg.get("message_id")):
        meta["message_id"] = tg["message_id"]
    sender = tg.get("from")
    if isinstance(sender, dict) and isinstance(sender.get("language_code"), str):
        meta["language"] = sender["language_code"][:16]
    urn = f"telegram:{chat_id}"
    live_move = edited and content in ("location", "venue") and not text  # a live location moving
    if content is None or live_move:
        marker = next((name for name in EVENT_TEXTS if tg.get(name) not in (None, False, "", [])), None)
        event = "location_update" if live_move else marker or "other"
        description = "Position en direct mise à jour." if live_move else EVENT_TEXTS.get(event, OTHER_EVENT_TEXT)
        if event == "dice" and isinstance(tg.get("dice"), dict):
            emoji, value = tg["dice"].get("emoji"), tg["dice"].get("value")
            if isinstance(emoji, str) and _is_int(value):
                description = f"Un dé a été lancé ({emoji[:8]} {value})."
        return inbound(CHANNEL, urn, description, update_id, meta={**meta, "event": event},
                       automated=True, kind="event")  # fmt: skip
    if content in ("location", "venue"):
        place = _location(tg)
        if place:
            meta["location"] = place
            # Said in words (a location has no text): the agents' console, the bot and the export show it.
            text = text or _place_text(place)
    if content == "contact" and isinstance(tg.get("contact"), dict):
        shared = {
            k: v[:64] for k in ("phone_number", "first_name", "last_name") if isinstance(v := tg["contact"].get(k), str)
        }
        meta["contact"] = shared
        name = " ".join(shared[k] for k in ("first_name", "last_name") if shared.get(k, "").strip())
        text = text or f"Contact partagé : {name or shared.get('phone_number') or 'sans nom'}"
    kind = "edited" if edited else "text"
    if kind == "text" and text.startswith("/start"):
        kind = "command"
        payload = text.partition(" ")[2].strip()
        if payload:
            meta["start_payload"] = payload[:64]
    return inbound(CHANNEL, urn, text, update_id, attachments=_attachments(tg), meta=meta, kind=kind)


def _membership(change: dict[str, Any], update_id: str) -> Message | None:
    """The bot blocked / unblocked (private chat), removed from / added to a group; None otherwise."""
    chat_id, chat_type = _chat(change)
    new = change.get("new_chat_member")
    status = new.get("status") if isinstance(new, dict) else None
    if status in OUT_STATUSES:
        event, text = "blocked", BLOCKED_TEXT
    elif status in IN_STATUSES:
        old = change.get("old_chat_member")
        if not (isinstance(old, dict) and old.get("status") in OUT_STATUSES):
            return None  # a change of rights within the chat: nothing for the conversation
        event, text = "unblocked", UNBLOCKED_TEXT
    else:
        return None
    meta = {"chat_id": chat_id, "chat_type": chat_type, "content": "event", "event": event}
    return inbound(CHANNEL, f"telegram:{chat_id}", text, update_id, meta=meta, automated=True, kind="event")


def _reaction(reaction: dict[str, Any], update_id: str) -> Message:
    chat_id, chat_type = _chat(reaction)
    new = reaction.get("new_reaction")
    emojis = (
        [r["emoji"][:8] for r in new if isinstance(r, dict) and isinstance(r.get("emoji"), str)][:10]
        if isinstance(new, list)
        else []
    )
    text = f"Réaction : {' '.join(emojis)}." if emojis else "Réaction retirée ou personnalisée."
    meta: dict[str, Any] = {"chat_id": chat_id, "chat_type": chat_type, "content": "event", "event": "reaction"}
    if _is_int(reaction.get("message_id")):
        meta["message_id"] = reaction["message_id"]
    return inbound(CHANNEL, f"telegram:{chat_id}", text, update_id, meta=meta, automated=True, kind="event")


def _attachments(tg: dict[str, Any]) -> tuple[Attachment, ...]:
    out: list[Attachment] = []
    photos = (
        [p for p in tg.get("photo") or () if isinstance(p, dict) and isinstance(p.get("file_id"), str)]
        if isinstance(tg.get("photo"), list)
        else []
    )
    if photos:
        best = max(photos, key=lambda p: _int_or_0(p.get("width")) * _int_or_0(p.get("height")))
        out.append(Attachment(content_type="image/jpeg", size=_size(best), ref=best["file_id"][:256]))
    defaults = {"document": None, "voice": "audio/ogg", "video": "video/mp4", "audio": "audio/mpeg",
                "video_note": "video/mp4", "animation": "video/mp4"}  # fmt: skip
    for name, ctype in defaults.items():
        media = tg.get(name)
        if not isinstance(media, dict) or not isinstance(media.get("file_id"), str):
            continue
        filename = media.get("file_name") if isinstance(media.get("file_name"), str) else None
        mime = media.get("mime_type") if isinstance(media.get("mime_type"), str) else ctype
        out.append(Attachment(filename=filename and filename[:255], content_type=mime and mime[:100],
                              size=_size(media), ref=media["file_id"][:256]))  # fmt: skip
    return tuple(out)


def _location(tg: dict[str, Any]) -> dict[str, Any]:
    venue = tg.get("venue") if isinstance(tg.get("venue"), dict) else None
    where = tg.get("location") if isinstance(tg.get("location"), dict) else (venue or {}).get("location")
    if not isinstance(where, dict):
        return {}
    lat, lon = where.get("latitude"), where.get("longitude")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (lat, lon)):
        return {}
    place: dict[str, Any] = {"latitude": lat, "longitude": lon}
    if venue is not None and isinstance(venue.get("title"), str):
        place["title"] = venue["title"][:200]
    return place


def _place_text(place: dict[str, Any]) -> str:
    """« Position partagée : 48.1173, -1.6778 », a venue's name before its coordinates."""
    where = f"{place['latitude']}, {place['longitude']}"
    title = str(place.get("title") or "").strip()
    return f"Position partagée : {title} ({where})" if title else f"Position partagée : {where}"


def _chat(obj: dict[str, Any]) -> tuple[int, str]:
    chat = obj.get("chat")
    if not isinstance(chat, dict) or not _is_int(chat.get("id")):
        raise BadRequest("Message sans conversation (chat.id entier attendu).")
    chat_type = chat.get("type")
    return chat["id"], chat_type[:20] if isinstance(chat_type, str) else "private"


def _object(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise BadRequest(f"{key} : un objet JSON est attendu.")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_or_0(value: Any) -> int:
    return value if _is_int(value) else 0


def _size(media: dict[str, Any]) -> int | None:
    size = media.get("file_size")
    return size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None
