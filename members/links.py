"""Accounts a member chose to have recognised: a Telegram chat linked to their file, with consent.

A Telegram chat is nobody's registered address, so a member writing from it proves who they are with
their member number and a one-time code. After such a verification the bot asks once, in that
conversation, whether to recognise the chat next time (``QUESTION``); only « oui » links it
(``link``): the chat's contact then carries the member (``gw:contact:{c}`` ``member_id``, as a
registered phone's contact does) and the second factor is the birth date. The link is kept beside the
member's other keys (``keys.member_links``: contact id -> channel, address, when, conversation), so
the member's export shows it and the erasure removes it. Linking and unlinking are audited.

The consent answer and « oubliez ce compte » are read here, by their words, before the bot's model reads
the message (``LinkWords``, the Rasa responder's ``word_answer`` hook): the model takes « oui » for a
plain agreement and « délier mon compte » for a question on delays, and no new intent is trained for them.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

from gateway import keys
from gateway.envelope import Message, now_ms
from members.audit import audit

LINKABLE_CHANNELS = ("telegram",)
# Conversation hash fields (the bot writes the first two, this module reads and clears them):
CODE_VERIFIED = "link_code_contact"  # the contact that has just verified by a one-time code here
ASKED = "link_asked"  # the contact asked whether to link its chat, its answer not read yet
OFFERED = "link_offered"  # set once the question was asked: never asked again in the conversation

QUESTION = (
    "Voulez-vous que je reconnaisse ce compte Telegram la prochaine fois ? Je vous demanderai alors votre "
    "date de naissance au lieu d'un code. Répondez OUI ou NON."
)
LINKED_TEXT = (
    "C'est noté : ce compte Telegram est relié à votre dossier. La prochaine fois, je vous demanderai votre "
    "date de naissance. Pour revenir en arrière, écrivez « oubliez ce compte »."
)
DECLINED_TEXT = "D'accord, je ne retiens pas ce compte Telegram. Que puis-je faire d'autre pour vous ?"
EXPIRED_TEXT = (
    "Votre vérification d'identité a expiré : ce compte Telegram n'a pas été relié à votre dossier. "
    "Reposez votre question pour vous identifier à nouveau."
)
UNLINKED_TEXT = (
    "C'est fait : ce compte Telegram n'est plus relié à votre dossier. La prochaine fois, je vous demanderai "
    "votre numéro d'adhérent et un code."
)
NOT_LINKED_TEXT = (
    "Ce compte Telegram n'est relié à aucun dossier : je vous demande votre numéro d'adhérent et un code à chaque fois."
)


def fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", (text or "").lower())
    return " ".join("".join(c for c in text if not unicodedata.combining(c)).split())


_YES = re.compile(r"^(oui|ouais|yes|ok|okay|d.?accord|volontiers|bien sur|je veux bien|avec plaisir)\b")
_NO = re.compile(r"^(non|nan|no|pas question|surtout pas|jamais|pas maintenant|plutot pas|je ne veux pas)\b")
_UNLINK = re.compile(
    r"(?<!j.ai )(?<!j ai )\boubli(e|ez|er)\b.*\b(compte|telegram|conversation)\b"
    r"|\b(delie\w*|delier|dissoci\w*|detach\w*)\b.*\b(compte|telegram)\b"
    r"|\bne (me )?reconnaiss\w* plus\b"
    r"|\b(supprim|retir|annul|enlev|coup)\w* (le |ce |mon |la |cette )?(lien|liaison)\b"
)


def consent_answer(text: str) -> str | None:
    """« oui » → "yes", « non » → "no", anything else → None (no link either way)."""
    folded = fold(text)
    if _NO.search(folded):
        return "no"
    if _YES.search(folded) and "?" not in folded and len(folded) <= 40:
        return "yes"
    return None


def unlink_asked(text: str) -> bool:
    """« oubliez ce compte », « délier mon compte Telegram », « ne reconnaissez plus ce compte »…"""
    return bool(_UNLINK.search(fold(text)))


async def link(redis: Any, member: str, contact: str, *, channel: str, address: str, conv_id: str) -> bool:
    """Link the chat's contact to ``member`` (the member said yes); False when it is another member's."""
    if not contact or not member:
        return False
    await redis.hsetnx(keys.contact(contact), "member_id", member)
    if await redis.hget(keys.contact(contact), "member_id") != member:
        return False
    await redis.sadd(keys.member_contacts(member), contact)
    record = {"channel": channel, "address": address, "linked_ms": now_ms(), "conversation": conv_id}
    await redis.hset(keys.member_links(member), contact, json.dumps(record))
    await audit(redis, member, conv_id, channel, "account_linked", [channel])
    return True


async def unlink(
    redis: Any, member: str, contact: str, *, conv_id: str = "", channel: str = "", agent: str = ""
) -> bool:
    """Undo a link (the member's « oubliez ce compte », or an agent from the console); False if none."""
    raw = await redis.hget(keys.member_links(member), contact)
    if not raw:
        return False
    record = json.loads(raw)
    await redis.hdel(keys.member_links(member), contact)
    if await redis.hget(keys.contact(contact), "member_id") == member:
        await redis.hdel(keys.contact(contact), "member_id")
    await redis.srem(keys.member_contacts(member), contact)
    # The chat proves nothing any more: a verification it holds in its open conversation ends with the link.
    open_conv = await redis.get(keys.open_conversation(contact, str(record.get("channel", ""))))
    for conv in {conv_id, str(open_conv or "")}:
        if conv and await redis.hget(keys.conversation(conv), "verified_contact") == contact:
            await redis.hset(keys.conversation(conv), mapping={"verified_until_ms": "0", "verify_stage": ""})
    await audit(redis, member, conv_id, channel or "console", "account_unlinked", [str(record.get("channel", ""))],
                agent=agent)  # fmt: skip
    return True


async def links(redis: Any, member: str) -> list[dict[str, Any]]:
    """The member's linked accounts: contact, channel, address, when (ms), conversation; oldest first."""
    out = []
    for contact, raw in (await redis.hgetall(keys.member_links(member))).items():
        try:
            record = json.loads(raw)
        except ValueError:
            record = {}
        out.append({"contact": contact, **(record if isinstance(record, dict) else {})})
    return sorted(out, key=lambda r: (int(r.get("linked_ms") or 0), r["contact"]))


async def linked_member(redis: Any, contact: str) -> str | None:
    """The member a contact's chat is linked to by consent (not by a registered address), if any."""
    member = await redis.hget(keys.contact(contact), "member_id")
    if member and await redis.hexists(keys.member_links(str(member)), contact):
        return str(member)
    return None


class LinkWords:
    """The answer to the link question and « oubliez ce compte » on a linkable channel, read by their words
    before the bot (the Rasa responder's ``word_answer`` hook). None: the bot answers the message."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis

    async def __call__(self, msg: Message, conversation: dict[str, str]) -> list[str] | None:
        if msg.channel not in LINKABLE_CHANNELS or not msg.contact_id or not msg.conversation_id:
            return None
        if msg.urn.startswith("telegram:-"):  # a group: nobody's chat
            return None
        conv_key = keys.conversation(msg.conversation_id)
        if conversation.get(ASKED) == msg.contact_id and await self.redis.hdel(conv_key, ASKED):
            said = consent_answer(msg.text)
            if said == "no":
                return [DECLINED_TEXT]
            if said == "yes":
                return [await self._consented(msg)]
            # Anything else: nothing is linked, the question is not asked again; the bot answers it.
        if unlink_asked(msg.text):
            member = await linked_member(self.redis, msg.contact_id)
            if member is None:
                return [NOT_LINKED_TEXT]
            await unlink(self.redis, member, msg.contact_id, conv_id=msg.conversation_id, channel=msg.channel)
            return [UNLINKED_TEXT]
        return None

    async def _consented(self, msg: Message) -> str:
        assert msg.contact_id and msg.conversation_id
        member, until, contact = await self.redis.hmget(
            keys.conversation(msg.conversation_id), ["verified_member", "verified_until_ms", "verified_contact"]
        )
        valid = bool(member) and str(until or "").isdigit() and int(until) > now_ms() and contact == msg.contact_id
        if not valid:
            return EXPIRED_TEXT
        done = await link(self.redis, str(member), msg.contact_id, channel=msg.channel, address=msg.urn,
                          conv_id=msg.conversation_id)  # fmt: skip
        return LINKED_TEXT if done else DECLINED_TEXT
