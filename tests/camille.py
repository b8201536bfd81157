"""Camille, the member the unit tests of the console and of members' rights plant in Redis."""

from __future__ import annotations

from redis.asyncio import Redis

from gateway.contacts import register_member
from members.records import Member, MemberStore

CAMILLE = Member("M0000042", "Camille", "Durand", "1975-03-12", "+33600000001", "camille@example.fr", "confort",
                 "Bretagne", "famille", "64.20", "2027-01-05")  # fmt: skip


async def plant_camille(redis: Redis, *, register: bool = True) -> Member:
    """Camille's record written; with ``register``, her phone and e-mail are known as hers."""
    async with redis.pipeline(transaction=False) as pipe:
        MemberStore(redis).write(pipe, CAMILLE)
        await pipe.execute()
    if register:
        await register_member(redis, CAMILLE.number, phone=CAMILLE.phone, email=CAMILLE.email)
    return CAMILLE
