"""Streams against a real redis-server: accept once, ack after handling, claim back, dead-letter."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from gateway import keys
from gateway.envelope import Message, inbound
from gateway.streams import Consumer, Streams


def make_streams(redis: Redis) -> Streams:
    return Streams(redis, shards=1, maxlen=10_000, dedup_ttl_s=60)


async def wait_until(cond: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_accept_is_once_per_dedup_id(redis: Redis) -> None:
    streams = make_streams(redis)
    first = inbound("sms", "tel:+33612345678", "bonjour", "SM1")
    again = inbound("sms", "tel:+33612345678", "bonjour", "SM1")
    a = await streams.accept("in", first, "sms:SM1")
    b = await streams.accept("in", again, "sms:SM1")
    assert a.new and not b.new
    assert b.msg_id == first.id and b.entry_id == a.entry_id
    assert await redis.xlen(keys.stream("in", 0)) == 1


async def test_concurrent_redeliveries_store_one_entry(redis: Redis) -> None:
    streams = make_streams(redis)
    results = await asyncio.gather(
        *(streams.accept("in", inbound("sms", "tel:+33600000001", "x", "SMdup"), "sms:SMdup") for _ in range(50))
    )
    assert sum(r.new for r in results) == 1
    assert await redis.xlen(keys.stream("in", 0)) == 1


async def run_consumer(
    redis: Redis, handler: Callable[[Message], Awaitable[None]], name: str = "c1", **kw: int
) -> tuple[Consumer, asyncio.Event, asyncio.Task[None]]:
    streams = make_streams(redis)
    await streams.ensure_groups("in", "g")
    consumer = Consumer(streams, "in", 0, "g", name, handler, claim_idle_ms=kw.pop("claim_idle_ms", 200), **kw)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    return consumer, stop, task


async def test_entries_are_acked_only_after_handling(redis: Redis) -> None:
    streams = make_streams(redis)
    await streams.ensure_groups("in", "g")
    release = asyncio.Event()
    seen: list[str] = []

    async def handler(msg: Message) -> None:
        await release.wait()
        seen.append(msg.id)

    msg = inbound("webchat", "webchat:s1", "x", "c1")
    await streams.accept("in", msg, "webchat:c1")
    _, stop, task = await run_consumer(redis, handler)

    async def pending() -> int:
        return int((await redis.xpending(keys.stream("in", 0), "g"))["pending"])

    await wait_until(lambda: _eq(pending(), 1))
    release.set()
    await wait_until(lambda: _eq(pending(), 0))
    assert seen == [msg.id]
    stop.set()
    await task


async def _eq(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def test_pending_entries_of_a_dead_consumer_are_claimed_back(redis: Redis) -> None:
    streams = make_streams(redis)
    await streams.ensure_groups("in", "g")
    msg = inbound("sms", "tel:+33611111111", "x", "SMdead")
    await streams.accept("in", msg, "sms:SMdead")
    # A consumer that read the entry and died before acknowledging it.
    got = await redis.xreadgroup("g", "dead-worker", {keys.stream("in", 0): ">"}, count=10)
    assert len(got[0][1]) == 1
    handled: list[str] = []

    async def handler(m: Message) -> None:
        handled.append(m.id)

    _, stop, task = await run_consumer(redis, handler, name="survivor", claim_idle_ms=100)
    await wait_until(lambda: _true(handled == [msg.id]))
    await wait_until(lambda: _eq(_pending_count(redis), 0))
    stop.set()
    await task


async def test_a_restarted_consumer_handles_its_own_pending_entries_first(redis: Redis) -> None:
    streams = make_streams(redis)
    await streams.ensure_groups("in", "g")
    msg = inbound("sms", "tel:+33622222222", "x", "SMown")
    await streams.accept("in", msg, "sms:SMown")
    await redis.xreadgroup("g", "c1", {keys.stream("in", 0): ">"}, count=10)
    handled: list[str] = []

    async def handler(m: Message) -> None:
        handled.append(m.id)

    # Claiming would wait a minute: the entry must come back through the consumer's own pending list.
    _, stop, task = await run_consumer(redis, handler, name="c1", claim_idle_ms=60_000)
    await wait_until(lambda: _true(handled == [msg.id]))
    stop.set()
    await task


async def test_poison_message_goes_to_dead_letters_and_blocks_nothing(redis: Redis) -> None:
    streams = make_streams(redis)
    await streams.ensure_groups("in", "g")
    poison = inbound("sms", "tel:+33633333333", "poison", "SMpoison")
    good = inbound("sms", "tel:+33633333333", "bon", "SMgood")
    other = inbound("sms", "tel:+33644444444", "autre", "SMother")
    for m in (poison, good, other):
        await streams.accept("in", m, f"sms:{m.external_id}")
    handled: list[str] = []

    async def handler(m: Message) -> None:
        if m.id == poison.id:
            raise RuntimeError("always fails")
        handled.append(m.id)

    _, stop, task = await run_consumer(redis, handler, claim_idle_ms=50, max_attempts=3)
    await wait_until(lambda: _true(set(handled) == {good.id, other.id}))
    await wait_until(lambda: _eq(redis.xlen(keys.dead("in", 0)), 1))
    dead = await redis.xrange(keys.dead("in", 0))
    assert "always fails" in dead[0][1]["error"]
    assert Message.from_json(dead[0][1]["m"]).id == poison.id
    await wait_until(lambda: _eq(_pending_count(redis), 0))
    stop.set()
    await task


async def test_unreadable_entry_is_buried_not_retried(redis: Redis) -> None:
    streams = make_streams(redis)
    await streams.ensure_groups("in", "g")
    await redis.xadd(keys.stream("in", 0), {"m": "{not json"})

    async def handler(m: Message) -> None:
        raise AssertionError("must not be called")

    _, stop, task = await run_consumer(redis, handler)
    await wait_until(lambda: _eq(redis.xlen(keys.dead("in", 0)), 1))
    stop.set()
    await task


async def _pending_count(redis: Redis) -> int:
    return int((await redis.xpending(keys.stream("in", 0), "g"))["pending"])


async def _true(value: bool) -> bool:
    return value
