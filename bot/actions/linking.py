"""The offer to recognise a Telegram chat next time (issue 20), on the bot's side.

After a member verified by one-time code from a Telegram chat that is nobody's registered address, the
bot asks once in the conversation whether to link the chat to the member's file, after answering the
question that was asked. The answer (« oui », « non », anything else) and « oubliez ce compte » are read
by the gateway before the bot (``members/links.py``), which links the chat only on « oui ». A
verification alone never links anything (``state.succeed(link=False)``).
"""

from __future__ import annotations

from typing import Any

from gateway import keys
from members import links

from . import state


async def code_verified(redis: Any, conv_id: str, contact: str, channel: str, urn: str) -> None:
    """``contact`` has just verified by a one-time code: on a linkable channel, it may be offered the link."""
    if channel in links.LINKABLE_CHANNELS and contact and not urn.startswith("telegram:-"):
        await redis.hset(keys.conversation(conv_id), links.CODE_VERIFIED, contact)


async def offer(redis: Any, conv_id: str, contact: str) -> str | None:
    """The question to ask now, once per conversation, or None: ``contact`` verified by code here, is
    still verified, its chat is linked to nobody, and the conversation is still the bot's."""
    key = keys.conversation(conv_id)
    code_contact, offered, status = await redis.hmget(key, [links.CODE_VERIFIED, links.OFFERED, "status"])
    if not contact or code_contact != contact or offered or status in ("handoff", "assigned", "closed"):
        return None
    if (await state.verification(redis, conv_id, contact)).member is None:
        return None
    if await redis.hget(keys.contact(contact), "member_id"):
        return None  # already someone's (a registered address, or linked before)
    if not await redis.hsetnx(key, links.OFFERED, "1"):
        return None
    await redis.hset(key, links.ASKED, contact)
    await redis.hdel(key, links.CODE_VERIFIED)
    return links.QUESTION
