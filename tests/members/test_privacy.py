"""The retention purge on a real Redis: old conversations and old stream entries go, recent ones stay."""

from __future__ import annotations

import json
import time

from redis.asyncio import Redis

from gateway import keys
from gateway.contacts import UNPROVEN, Contacts
from gateway.conversations import Conversations
from gateway.envelope import Message, inbound
from gateway.responders import AckResponder
from gateway.router import Router
from gateway.streams import Streams
from members.privacy import MemberData
from tests.camille import plant_camille

DAY_MS = 86_400_000


async def test_purge_removes_what_is_older_than_the_retention(redis: Redis) -> None:
    now = int(time.time() * 1000)
    convs = Conversations(redis)
    for conv, age_days in (("old", 400), ("new", 2)):
        msg = Message(id=f"m-{conv}", channel="sms", urn=f"tel:+3319900{age_days:04d}", direction="in",
                      text=f"texte {conv}", conversation_id=conv, created_ms=now - age_days * DAY_MS)  # fmt: skip
        await redis.hset(keys.conversation(conv), mapping={"id": conv, "channel": "sms"})
        assert await convs.append(msg)
    stream = keys.stream("in", 0)
    await redis.xadd(stream, {"m": "{}"}, id=f"{now - 400 * DAY_MS}-0")
    await redis.xadd(stream, {"m": "{}"}, id=f"{now - 2 * DAY_MS}-0")
    # A conversation indexed as old but written to since: kept, and re-indexed.
    await redis.hset(keys.conversation("revived"), mapping={"id": "revived", "last_ms": now})
    await redis.zadd(keys.RETENTION_INDEX, {"revived": now - 400 * DAY_MS})

    done = await MemberData(redis, stream_shards=1).purge_conversations(now - 365 * DAY_MS)

    assert done == {"conversations": 1, "messages": 1, "stream_entries": 1}
    assert not await redis.exists(keys.conversation("old"), keys.conversation_log("old"), keys.message("old", "m-old"))
    assert await redis.exists(keys.message("new", "m-new")) and await redis.exists(keys.conversation("revived"))
    assert await redis.zscore(keys.RETENTION_INDEX, "revived") == now
    assert await redis.xlen(stream) == 1


async def test_the_audit_trail_is_a_chain_that_shows_any_change(redis: Redis) -> None:
    from members.audit import audit, verify_audit

    for what in ("claim", "agent_opened_record", "quote"):
        await audit(redis, "M0000042", "c1", "sms", what, ["S1"], agent="lea" if what.startswith("agent") else "")
    assert await verify_audit(redis, "M0000042") == []
    entries = await redis.xrange(keys.member_audit("M0000042"))
    assert [e["what"] for _, e in entries] == ["claim", "agent_opened_record", "quote"]
    assert entries[1][1]["prev"] == entries[0][1]["hash"] and entries[1][1]["agent"] == "lea"
    # Someone with direct access to Redis rewrites the middle entry (the product has no way to):
    # the chain shows where.
    stream = keys.member_audit("M0000042")
    await redis.delete(stream)
    for n, (entry_id, fields) in enumerate(entries):
        await redis.xadd(stream, {**fields, "agent": ""} if n == 1 else fields, id=entry_id)
    assert await verify_audit(redis, "M0000042") == [entries[1][0]]
    # Removing an entry is seen too.
    await redis.delete(stream)
    for n, (entry_id, fields) in enumerate(entries):
        if n != 1:
            await redis.xadd(stream, fields, id=entry_id)
    assert await verify_audit(redis, "M0000042") == [entries[2][0]]


async def test_mail_from_an_unproven_sender_under_the_members_address_is_exported_and_erased(redis: Redis) -> None:
    """A mail claiming Camille's address that failed DMARC is kept under a contact of its own, never
    linked to her: her export still shows it (held under her address) and her erasure removes it."""
    await plant_camille(redis)
    streams = Streams(redis, shards=1, maxlen=10_000, dedup_ttl_s=60)
    router = Router(redis, streams, AckResponder(), Contacts(redis), Conversations(redis))
    urn = "mailto:camille@example.fr"
    await router.handle(inbound("email", urn, "Mon RIB a changé", "<m1@example.fr>", sender_authentic=True))
    forged = inbound("email", urn, "Je suis née le 12/03/1975, mon IBAN FR76…", "<f1@forger.example>",
                     automated=True, meta={"automated_reason": "unauthenticated:dmarc=fail"}, sender_authentic=False)  # fmt: skip
    await streams.accept("in", forged, "<f1@forger.example>")  # as the gateway accepts it, then the router
    await router.handle(forged)
    # Mail under another address, unproven too: not Camille's, neither exported nor erased with her.
    other = "mailto:dominique@example.org"
    await router.handle(inbound("email", other, "Autre personne", "<o1@example.org>", automated=True,
                                meta={"automated_reason": "unauthenticated:dmarc=fail"}, sender_authentic=False))  # fmt: skip
    unproven_contact = str(await redis.get(keys.address(UNPROVEN + urn)))
    forged_conv = str(await redis.get(keys.open_conversation(unproven_contact, "email")))
    other_contact = str(await redis.get(keys.address(UNPROVEN + other)))

    data = MemberData(redis, stream_shards=1)
    exported = await data.export("M0000042")
    texts = [m["text"] for c in exported["conversations"] for m in c["messages"] if m["direction"] == "in"]
    assert sorted(texts) == ["Je suis née le 12/03/1975, mon IBAN FR76…", "Mon RIB a changé"]
    flagged = [c for c in exported["contacts"] if c.get("unproven") == "1"]
    assert [c["id"] for c in flagged] == [unproven_contact] and flagged[0]["addresses"] == [urn]
    assert "Autre personne" not in json.dumps(exported, ensure_ascii=False)

    await data.erase("M0000042", by="dpo")
    assert not await redis.exists(keys.address(UNPROVEN + urn), keys.contact(unproven_contact))
    assert not await redis.exists(keys.conversation(forged_conv), keys.conversation_log(forged_conv))
    assert not [f for _, f in await redis.xrange(keys.stream("in", 0)) if "12/03/1975" in json.dumps(f)]
    assert await redis.get(keys.address(UNPROVEN + other)) == other_contact  # someone else's: kept


async def test_a_linked_telegram_account_is_exported_and_erased(redis: Redis) -> None:
    """A Telegram chat Camille chose to have recognised (members/links.py): her export names it, her erasure
    removes the link, the chat's contact, its address and its conversation."""
    from members import links

    await plant_camille(redis, register=False)
    router = Router(redis, Streams(redis, shards=1, maxlen=10_000, dedup_ttl_s=60), AckResponder(), Contacts(redis),
                    Conversations(redis))  # fmt: skip
    urn = "telegram:5550042"
    await router.handle(inbound("telegram", urn, "où en est mon devis ?", "tg-1"))
    contact = str(await redis.get(keys.address(urn)))
    conv = str(await redis.get(keys.open_conversation(contact, "telegram")))
    assert await links.link(redis, "M0000042", contact, channel="telegram", address=urn, conv_id=conv)

    data = MemberData(redis, stream_shards=1)
    exported = await data.export("M0000042")
    assert [(a["contact"], a["channel"], a["address"]) for a in exported["linked_accounts"]] == [
        (contact, "telegram", urn)
    ]
    assert next(c for c in exported["contacts"] if c["id"] == contact)["addresses"] == [urn]
    assert "account_linked" in [e["what"] for e in exported["audit"]]

    await data.erase("M0000042", by="dpo")
    assert not await redis.exists(keys.member_links("M0000042"), keys.contact(contact), keys.address(urn))
    assert not await redis.exists(keys.conversation(conv))
    assert (await data.export("M0000042"))["linked_accounts"] == []
