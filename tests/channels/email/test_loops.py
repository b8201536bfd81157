"""The mail-loop guard's counting in a real Redis: shared by every process, per address, sliding."""

from __future__ import annotations

from redis.asyncio import Redis

from channels.email.loops import LoopGuard
from gateway import keys


async def test_the_count_is_shared_per_address_and_a_redelivery_counts_once(redis: Redis) -> None:
    web1, web2 = (LoopGuard(redis, per_10min=5, per_day=20) for _ in range(2))  # two listener processes
    paces = [await (web1 if n % 2 else web2).count("robot@example.fr", f"m{n}") for n in range(5)]
    assert [p.last_10min for p in paces] == [1, 2, 3, 4, 5] and not any(p.over for p in paces)
    assert not (await web1.count("robot@example.fr", "m4")).over  # the relay delivers m4 again
    sixth = await web2.count("robot@example.fr", "m5")
    assert (sixth.last_10min, sixth.over) == (6, True)
    assert not (await web1.count("jeanne@example.fr", "j1")).over  # another address has its own count
    assert 0 < await redis.pttl(keys.email_sender_pace("robot@example.fr")) <= 24 * 3600 * 1000


async def test_the_daily_figure_and_the_off_switch(redis: Redis) -> None:
    daily = LoopGuard(redis, per_10min=0, per_day=3)
    assert [(await daily.count("a@example.fr", f"d{n}")).over for n in range(4)] == [False, False, False, True]
    off = LoopGuard(redis, per_10min=0, per_day=0)
    assert not any([(await off.count("b@example.fr", f"o{n}")).over for n in range(50)])
    assert await redis.exists(keys.email_sender_pace("b@example.fr")) == 0
