"""What the one-time-code limiter allows, measured on a real Redis (README, "Threat model": a burst of
``OTP_BURST``, then ``OTP_PER_HOUR`` an hour, ``OTP_PER_DAY`` a day per member number; per address;
``OTP_PER_MINUTE`` for all members). The hourly figures are measured with the clock scaled: the same
GCRA with the rate in seconds instead of hours."""

from __future__ import annotations

import asyncio
import itertools
import time

from redis.asyncio import Redis

from members.codes import BUSY_TEXT, CodeLimits, OneTimeCodes
from members.records import Member, MemberStore

OPEN = dict(per_hour=3600 * 1000, burst=1000, per_day=1000, failures_per_day=1000, source_per_hour=3600 * 1000,
            source_burst=1000, per_minute=100_000)  # fmt: skip
SOURCES = itertools.count()


async def plant(redis: Redis, number: str) -> None:
    member = Member(number, "Test", "Adherent", "1970-01-15", "+33199500001", "", "confort", "Bretagne",
                    "famille", "50.00", "2099-01-01")  # fmt: skip
    async with redis.pipeline(transaction=False) as pipe:
        MemberStore(redis).write(pipe, member)
        await pipe.execute()


async def sent(codes: OneTimeCodes, conv: str, number: str, source: str | None = None) -> bool:
    outcome = await codes.request(conv, number, source=source or f"s{next(SOURCES)}")
    return any(r.meta.get("otp") for r in outcome.send)


async def test_a_member_gets_the_burst_then_the_rate_and_no_more(redis: Redis) -> None:
    await plant(redis, "M0700001")
    # 2 codes a second (as 2 an hour, the clock scaled by 3600) after a burst of 3.
    codes = OneTimeCodes(redis, secret="s", limits=CodeLimits(**{**OPEN, "per_hour": 2 * 3600, "burst": 3}))
    burst = [await sent(codes, f"c{n}", "M0700001") for n in range(4)]
    assert burst == [True, True, True, False]  # the burst, at once
    started, granted = time.monotonic(), 3
    while time.monotonic() - started < 3.25:  # asking every 20 ms for 3.25 s
        granted += await sent(codes, "c", "M0700001")
        await asyncio.sleep(0.02)
    # burst + one per interval after the first: 3 + ⌊2 × 3.25⌋ = 9 (as 3 + ⌊2 × 3.25 h⌋ in 3 h 15 min;
    # at most 5 in any hour: the burst of 3, then at 30 and 60 minutes).
    assert granted == 9, granted


async def test_the_day_the_address_and_the_minute_have_their_caps(redis: Redis) -> None:
    for n in range(1, 4):
        await plant(redis, f"M070001{n}")
    per_day = OneTimeCodes(redis, secret="s", limits=CodeLimits(**{**OPEN, "per_day": 8}))
    outcomes = [await per_day.request(f"d{n}", "M0700011", source=f"d{n}") for n in range(11)]
    assert [any(r.meta.get("otp") for r in o.send) for o in outcomes] == [True] * 8 + [False] * 3
    assert all("Trop de codes ont été demandés aujourd'hui" in o.say[0] for o in outcomes[8:])
    # The member is told once, at the registered phone, that someone asked too many.
    alerts = [(n, r) for n, o in enumerate(outcomes) for r in o.send if r.meta.get("otp_alert")]
    assert [(n, r.urn) for n, r in alerts] == [(8, "tel:+33199500001")]
    assert "Quelqu'un a demandé plusieurs codes pour votre dossier" in alerts[0][1].text
    # One address: a burst of 3, whatever member numbers it tries.
    per_source = OneTimeCodes(redis, secret="s", limits=CodeLimits(**{**OPEN, "source_burst": 3, "source_per_hour": 6}))
    # (Numbers nobody holds: the same steps, the same words, only no message leaves.)
    tries = [await per_source.request(f"e{n}", f"M07000{20 + n}", source="webchat-ip:1") for n in range(5)]
    assert ["vient d'être envoyé" in t.say[0] for t in tries] == [True, True, True, False, False]
    assert "réessayez dans" in tries[3].say[0] and all(t.send == [] for t in tries)
    # All members together: the per-minute cap.
    per_minute = OneTimeCodes(redis, secret="s", limits=CodeLimits(**{**OPEN, "per_minute": 5}))
    outcomes = [await per_minute.request(f"f{n}", f"M07001{n:02d}", source=f"t{n}") for n in range(7)]
    assert [o.say == [BUSY_TEXT] for o in outcomes] == [False] * 5 + [True] * 2


async def test_a_code_asked_from_the_members_own_address_says_where_it_went(redis: Redis) -> None:
    """« envoyez-moi un code » from a registered address (``send_known``): the sender is the member, told the
    code went by SMS to the registered phone; a code asked with a member number gets the same words for all."""
    from gateway.rasa import CodeRequest
    from members.codes import SENT_KNOWN_TEXT, SENT_TEXT

    await plant(redis, "M0000001")
    codes = OneTimeCodes(redis, secret="s", limits=CodeLimits(**OPEN))
    known = await codes.handle(CodeRequest("conv-known", "M0000001", "tel:+33199500001", "send_known"))
    assert known.say == [SENT_KNOWN_TEXT["sms"]] and [r.urn for r in known.send] == ["tel:+33199500001"]
    asked = await codes.handle(CodeRequest("conv-number", "M0000001", "webchat:x", "send"))
    assert asked.say[0].startswith(SENT_TEXT[:40]) and len(asked.send) == 1
