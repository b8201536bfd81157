"""Contacts, conversations, status callbacks, rate limits and the router, on a real Redis."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from gateway import keys
from gateway.contacts import Contacts, register_member
from gateway.conversations import Conversations
from gateway.envelope import Message, StatusUpdate, inbound
from gateway.ratelimit import RateLimiter
from gateway.responders import ACK_TEXT, AckResponder, Reply
from gateway.router import Router
from gateway.streams import Streams


async def test_one_contact_per_address_linked_to_the_member(redis: Redis) -> None:
    await register_member(redis, "M100234", phone="+33612345678", email="Jeanne.Martin@example.fr")
    contacts = Contacts(redis)
    by_phone = await contacts.resolve("tel:+33612345678", "sms")
    assert by_phone == await contacts.resolve("tel:+33612345678", "sms")
    assert (await contacts.get(by_phone))["member_id"] == "M100234"
    by_mail = await contacts.resolve("mailto:jeanne.martin@example.fr", "email")
    assert (await contacts.get(by_mail))["member_id"] == "M100234"
    stranger = await contacts.resolve("telegram:99", "telegram")
    assert "member_id" not in await contacts.get(stranger)
    # Once attached, a second address leads to the same person.
    await contacts.attach(by_phone, "telegram:42")
    assert await contacts.resolve("telegram:42", "telegram") == by_phone
    assert await contacts.addresses(by_phone) == {"tel:+33612345678", "telegram:42"}


async def test_email_replies_join_their_thread(redis: Redis) -> None:
    contacts, convs = Contacts(redis), Conversations(redis)
    cid = await contacts.resolve("mailto:a@example.fr", "email")
    first = inbound("email", "mailto:a@example.fr", "q", "m1@x", meta={"message_id": "m1@x"})
    conv = await convs.for_message(cid, first)
    await convs.append(first.with_(conversation_id=conv, contact_id=cid))
    # A reply from another address of the same person (attached to the contact), threaded on our first message.
    await contacts.attach(cid, "mailto:b@example.fr")
    reply = inbound("email", "mailto:b@example.fr", "r", "m2@x", meta={"thread_refs": ["m1@x"]})
    assert await convs.for_message(await contacts.resolve("mailto:b@example.fr", "email"), reply) == conv
    # Someone else quoting the same Message-ID does not get into that conversation: one of their own.
    stranger = await contacts.resolve("mailto:c@example.fr", "email")
    forged = inbound("email", "mailto:c@example.fr", "s", "m3@x", meta={"thread_refs": ["m1@x"]})
    assert await convs.for_message(stranger, forged) not in ("", conv)


async def test_history_keeps_order_and_appends_once(redis: Redis) -> None:
    contacts, convs = Contacts(redis), Conversations(redis)
    cid = await contacts.resolve("webchat:s", "webchat")
    msgs = [inbound("webchat", "webchat:s", f"m{i}", f"c{i}") for i in range(3)]
    conv = await convs.for_message(cid, msgs[0])
    for m in msgs + msgs:
        await convs.append(m.with_(conversation_id=conv))
    assert [h["text"] for h in await convs.history(conv)] == ["m0", "m1", "m2"]


async def test_status_callbacks_only_move_forward_and_may_arrive_first(redis: Redis) -> None:
    convs = Conversations(redis)
    out = Message(id="o1", channel="sms", urn="tel:+33600000000", direction="out", text="t", conversation_id="c1")
    await convs.append(out, status="queued")
    # The "delivered" callback races ahead of the send's own answer: it is parked...
    assert not await convs.apply_status(StatusUpdate("sms", "SM9", "delivered"))
    await convs.set_status("c1", "o1", "sent")
    await convs.remember_provider_id("sms", "SM9", "c1", "o1")
    # ...and applied once the provider id is known.
    assert (await convs.record("c1", "o1"))["status"] == "delivered"
    # A late "sent" (shuffled) and a duplicate "delivered" change nothing.
    assert not await convs.apply_status(StatusUpdate("sms", "SM9", "sent"))
    assert not await convs.apply_status(StatusUpdate("sms", "SM9", "delivered"))
    assert (await convs.record("c1", "o1"))["status"] == "delivered"


async def test_failed_status_keeps_the_provider_reason(redis: Redis) -> None:
    convs = Conversations(redis)
    out = Message(id="o2", channel="sms", urn="tel:+33600000000", direction="out", text="t", conversation_id="c2")
    await convs.append(out, status="queued")
    await convs.remember_provider_id("sms", "SM10", "c2", "o2")
    await convs.apply_status(StatusUpdate("sms", "SM10", "undelivered", "30003", "Unreachable destination handset"))
    rec = await convs.record("c2", "o2")
    assert (rec["status"], rec["error_code"], rec["error"]) == (
        "undelivered",
        "30003",
        "Unreachable destination handset",
    )


async def test_rate_limiter_spaces_sends_across_callers(redis: Redis) -> None:
    limiter = RateLimiter(redis)
    assert await limiter.acquire("t", per_second=10, burst=1) == 0.0
    wait = await limiter.acquire("t", per_second=10, burst=1)
    assert 0.05 < wait <= 0.1
    # A burst allows that many at once, then spaces the rest.
    grants = [await limiter.acquire("b", per_second=5, burst=3) for _ in range(5)]
    assert grants[:3] == [0.0, 0.0, 0.0] and all(g > 0 for g in grants[3:])
    start = time.monotonic()
    assert await limiter.acquire("other", per_second=1, burst=1) == 0.0
    assert time.monotonic() - start < 0.5


async def test_router_handles_a_replayed_message_once(redis: Redis) -> None:
    streams = Streams(redis, shards=1, maxlen=1000, dedup_ttl_s=60)
    router = Router(redis, streams, AckResponder(), Contacts(redis), Conversations(redis))
    msg = inbound("sms", "tel:+33655555555", "bonjour", "SMr")
    await router.handle(msg)
    await router.handle(msg)  # replay after a crash before the ack
    out = await redis.xrange(keys.stream("out", 0))
    assert len(out) == 1
    reply = Message.from_json(out[0][1]["m"])
    assert (reply.text, reply.in_reply_to, reply.urn) == (ACK_TEXT, msg.id, msg.urn)


async def test_automated_mail_is_stored_but_never_answered(redis: Redis) -> None:
    streams = Streams(redis, shards=1, maxlen=1000, dedup_ttl_s=60)
    convs = Conversations(redis)
    router = Router(redis, streams, AckResponder(), Contacts(redis), convs)
    msg = inbound("email", "mailto:robot@example.fr", "absent", "ooo@x", automated=True)
    await router.handle(msg)
    assert await redis.xlen(keys.stream("out", 0)) == 0
    cid = await Contacts(redis).resolve("mailto:robot@example.fr", "email")
    conv = await convs.for_message(cid, msg)
    assert [h["id"] for h in await convs.history(conv)] == [msg.id]


class TwoAnswers:
    """A bot turn of two messages and, first, a one-time code addressed to the registered phone."""

    name = "two"

    async def respond(self, msg: Message, conversation: dict[str, str]) -> list[Reply]:
        code = Reply("Votre code de vérification : 123456.", channel="sms", urn="tel:+33612345678")
        return [code, Reply("Voici où en est votre dossier."), Reply("Que puis-je faire d'autre pour vous ?")]


async def test_a_bot_turn_is_one_reply_mail_and_stays_separate_messages_elsewhere(redis: Redis) -> None:
    streams = Streams(redis, shards=1, maxlen=1000, dedup_ttl_s=60)
    router = Router(redis, streams, TwoAnswers(), Contacts(redis), Conversations(redis))
    router.joined_channels = frozenset({"email"})  # as the gateway sets it from EmailChannel.joins_replies
    await router.handle(inbound("email", "mailto:camille@example.fr", "où en est mon dossier", "m1@x"))
    await router.handle(inbound("sms", "tel:+33655555555", "ou en est mon dossier", "SMj"))
    out = [Message.from_json(fields["m"]) for _, fields in await redis.xrange(keys.stream("out", 0))]
    mails = [m for m in out if m.channel == "email"]
    assert [m.text for m in mails] == ["Voici où en est votre dossier.\n\nQue puis-je faire d'autre pour vous ?"]
    codes = [m for m in out if m.urn == "tel:+33612345678"]
    # The code keeps its own message, queued after the sender's replies and numbered apart from them
    # (.x1): the sender's replies are .r1, .r2 whether or not a code left (nothing to enumerate).
    assert len(codes) == 2 and all(c.id.endswith(".x1") for c in codes)
    assert sorted(m.id.rsplit(".", 1)[1] for m in out if m.urn == "tel:+33655555555") == ["r1", "r2"]
    assert out[-1].urn == "tel:+33612345678"
    texts = [m.text for m in out if m.urn == "tel:+33655555555"]
    assert texts == ["Voici où en est votre dossier.", "Que puis-je faire d'autre pour vous ?"]
