"""Members and records the bot's and the console's end-to-end tests plant in Redis."""

from __future__ import annotations

import datetime as dt

from redis.asyncio import Redis

from members.records import Card, Claim, Complaint, Member, MemberStore, Quote

TODAY = dt.date.today()

CAMILLE = Member(
    number="M0000042", first_name="Camille", last_name="Durand", birth_date="1975-03-12",
    phone="+33199001234", email="camille.durand@example.fr", cover_level="confort", region="Bretagne",
    segment="famille", contribution_eur="64.20", contribution_call_date=(TODAY + dt.timedelta(days=20)).isoformat(),
)  # fmt: skip
LOUIS = Member(
    number="M0000043", first_name="Louis", last_name="Petitjean", birth_date="1960-07-01", phone="",
    email="louis.petitjean@example.fr", cover_level="integral", region="Occitanie", segment="senior",
    contribution_eur="112.75", contribution_call_date=(TODAY + dt.timedelta(days=5)).isoformat(),
)  # fmt: skip


def day(delta: int) -> str:
    return (TODAY + dt.timedelta(days=delta)).isoformat()


async def seed(redis: Redis) -> None:
    store = MemberStore(redis)
    async with redis.pipeline(transaction=False) as pipe:
        for member in (CAMILLE, LOUIS):
            store.write(pipe, member)
        for record in (
            Claim("S004201", "M0000042", day(-10), "pharmacie", "23.50", "18.80", "paid", day(-8), True),
            Claim("S004202", "M0000042", day(-1), "lunettes", "420.00", "", "in_progress", "", False),
            Card("TP0000042", "M0000042", "sent", day(-3)),
            Complaint("REC-2026-000042", "M0000042", day(-2), False, day(8), "open", "Prélèvement en double", ""),
            Quote("DV0000043", "M0000043", "dentaire", day(-6), "accepted", "980.00", "245.00"),
            Card("TP0000043", "M0000043", "delivered", day(-30)),
        ):
            store.write_record(pipe, record)
        await pipe.execute()
