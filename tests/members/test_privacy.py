"""The retention purge on a real Redis: old conversations and old stream entries go, recent ones stay."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from gateway import keys
from gateway.conversations import Conversations
from gateway.envelope import Message
from members.privacy import MemberData

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
