"""A Telegram chat linked to a member's file with consent (members/links.py), on a real Redis: the answer to
the bot's question and « oubliez ce compte » read by their words before the bot, the link and its undoing."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from bot.actions import linking, state
from gateway import keys
from gateway.envelope import Message
from members import links
from members.audit import verify_audit

MEMBER = "M0100042"
URN = "telegram:5550042"


def said(text: str, *, contact: str = "c-tg", conv: str = "conv-tg", urn: str = URN) -> Message:
    return Message(id=f"m-{text[:8]}", channel="telegram", urn=urn, direction="in", text=text, contact_id=contact,
                   conversation_id=conv)  # fmt: skip


async def ask_after_code(redis: Redis, *, contact: str = "c-tg", conv: str = "conv-tg") -> str | None:
    """The member verified by a code on Telegram, then got their answer: the bot's offer."""
    await state.succeed(redis, conv, MEMBER, contact)
    await linking.code_verified(redis, conv, contact, "telegram", URN)
    return await linking.offer(redis, conv, contact)


@pytest.mark.parametrize("text", ["oubliez ce compte", "délier mon compte Telegram", "Oubliez ce compte svp",
                                  "ne me reconnaissez plus", "supprimez le lien", "dissocier mon compte telegram"])  # fmt: skip
def test_unlink_requests_are_read_by_their_words(text: str) -> None:
    assert links.unlink_asked(text)


@pytest.mark.parametrize("text", ["j'ai oublié mon code", "j'ai oublié mon compte", "où en est mon remboursement",
                                  "oui", "compte rendu de ma consultation"])  # fmt: skip
def test_other_messages_are_no_unlink_request(text: str) -> None:
    assert not links.unlink_asked(text)


def test_consent_words() -> None:
    assert [links.consent_answer(t) for t in ("OUI", "oui merci", "d'accord", "Ok !")] == ["yes"] * 4
    assert [links.consent_answer(t) for t in ("NON", "non merci", "nan", "jamais")] == ["no"] * 4
    assert [links.consent_answer(t) for t in ("oui, et ma carte ?", "bof", "où en est mon devis", "")] == [None] * 4


async def test_yes_links_the_chat_and_the_member_can_undo_it(redis: Redis) -> None:
    assert await ask_after_code(redis) == links.QUESTION
    assert await linking.offer(redis, "conv-tg", "c-tg") is None  # asked once
    words = links.LinkWords(redis)
    conv = await redis.hgetall(keys.conversation("conv-tg"))
    assert await words(said("OUI"), conv) == [links.LINKED_TEXT]
    assert await redis.hget(keys.contact("c-tg"), "member_id") == MEMBER  # as a registered address: birth date
    assert await links.linked_member(redis, "c-tg") == MEMBER
    assert [(a["contact"], a["address"]) for a in await links.links(redis, MEMBER)] == [("c-tg", URN)]
    # The answer is read once: a later « oui » is the bot's.
    assert await words(said("oui"), await redis.hgetall(keys.conversation("conv-tg"))) is None

    conv = await redis.hgetall(keys.conversation("conv-tg"))
    assert await words(said("oubliez ce compte"), conv) == [links.UNLINKED_TEXT]
    assert not await redis.hget(keys.contact("c-tg"), "member_id")
    assert not await redis.sismember(keys.member_contacts(MEMBER), "c-tg")
    assert await links.links(redis, MEMBER) == []
    assert (await state.verification(redis, "conv-tg", "c-tg")).member is None  # the chat proves nothing now
    assert await words(said("délier mon compte Telegram"), conv) == [links.NOT_LINKED_TEXT]
    trail = [e["what"] for _, e in await redis.xrange(keys.member_audit(MEMBER))]
    assert trail == ["account_linked", "account_unlinked"] and await verify_audit(redis, MEMBER) == []


@pytest.mark.parametrize("answer", ["NON", "où en est mon devis ?", "bof"])
async def test_no_or_anything_else_links_nothing_and_is_not_asked_again(redis: Redis, answer: str) -> None:
    assert await ask_after_code(redis) == links.QUESTION
    words = links.LinkWords(redis)
    reply = await words(said(answer), await redis.hgetall(keys.conversation("conv-tg")))
    assert reply == ([links.DECLINED_TEXT] if answer == "NON" else None)  # anything else: the bot answers it
    assert await words(said("oui"), await redis.hgetall(keys.conversation("conv-tg"))) is None
    assert not await redis.hget(keys.contact("c-tg"), "member_id") and await links.links(redis, MEMBER) == []
    await linking.code_verified(redis, "conv-tg", "c-tg", "telegram", URN)
    assert await linking.offer(redis, "conv-tg", "c-tg") is None  # never asked again in the conversation


async def test_yes_after_the_verification_expired_links_nothing(redis: Redis) -> None:
    assert await ask_after_code(redis) == links.QUESTION
    await redis.hset(keys.conversation("conv-tg"), "verified_until_ms", "1")
    words = links.LinkWords(redis)
    assert await words(said("oui"), await redis.hgetall(keys.conversation("conv-tg"))) == [links.EXPIRED_TEXT]
    assert await links.links(redis, MEMBER) == []


async def test_never_offered_but_after_a_code_on_a_private_telegram_chat(redis: Redis) -> None:
    # A verification without a code (birth date from a registered address) offers nothing.
    await state.succeed(redis, "conv-sms", MEMBER, "c-sms")
    assert await linking.offer(redis, "conv-sms", "c-sms") is None
    # A code on another channel (web chat, SMS): nothing either.
    await linking.code_verified(redis, "conv-web", "c-web", "webchat", "webchat:abc")
    await state.succeed(redis, "conv-web", MEMBER, "c-web")
    assert await linking.offer(redis, "conv-web", "c-web") is None
    # A Telegram group: nobody's chat.
    await state.succeed(redis, "conv-grp", MEMBER, "c-grp")
    await linking.code_verified(redis, "conv-grp", "c-grp", "telegram", "telegram:-100123")
    assert await linking.offer(redis, "conv-grp", "c-grp") is None
    # Another sender of the conversation than the one that gave the code: nothing.
    await state.succeed(redis, "conv-tg", MEMBER, "c-tg")
    await linking.code_verified(redis, "conv-tg", "c-tg", "telegram", URN)
    assert await linking.offer(redis, "conv-tg", "c-other") is None
    # A chat already linked to someone: nothing.
    await redis.hset(keys.contact("c-tg"), "member_id", "M0100099")
    assert await linking.offer(redis, "conv-tg", "c-tg") is None
    # Words on other channels are the bot's.
    sms = Message(id="s1", channel="sms", urn="tel:+33600000001", direction="in", text="oubliez ce compte",
                  contact_id="c-sms", conversation_id="conv-sms")  # fmt: skip
    assert await links.LinkWords(redis)(sms, {}) is None


async def test_an_agent_undoes_a_link(redis: Redis) -> None:
    await links.link(redis, MEMBER, "c-tg", channel="telegram", address=URN, conv_id="conv-tg")
    assert await links.unlink(redis, MEMBER, "c-tg", agent="lea")
    assert not await links.unlink(redis, MEMBER, "c-tg", agent="lea")
    entries = [e for _, e in await redis.xrange(keys.member_audit(MEMBER))]
    assert [(e["what"], e["agent"], e["channel"]) for e in entries][-1] == ("account_unlinked", "lea", "console")
