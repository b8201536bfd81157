"""Members told before they ask, through ``run.py serve``: a claim the back office sets to paid through the
records API sends one short message on the member's channel; none when the member declined it, none twice,
and none at night (the SMS waits for the channel's hours)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from redis.asyncio import Redis

from gateway import keys
from members.proactive import WAITING
from tests.e2e.product import ROOT, Product
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import FakeTwilio

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def member(number: str, **fields: str) -> dict[str, Any]:
    return {"version": 1, "first_name": "Léa", "last_name": "Martin", "birth_date": "1980-02-14",
            "phone": f"+336123{number[-5:]}", "email": f"{number.lower()}@example.org", "cover_level": "confort",
            "region": "Normandie", "segment": "famille", "contribution_eur": "61,20",
            "contribution_call_date": "2027-01-05", **fields}  # fmt: skip


PAID = {"care_date": "2026-11-02", "kind": "pharmacie", "amount_eur": "80,00", "reimbursed_eur": "57,42",
        "status": "paid", "payment_date": "2026-12-05", "teletransmitted": True}  # fmt: skip


async def test_a_paid_claim_is_told_once_on_the_members_channel_not_when_declined_nor_at_night(
    make_product: Callable[..., Product], redis_url: str, redis: Redis, smtp_sink: SmtpSink, fake_twilio: FakeTwilio
) -> None:
    # SMS may carry these messages only on another day of the week: for SMS it is "night" all this test.
    other_day = DAYS[(dt.datetime.now(ZoneInfo("Europe/Paris")).weekday() + 3) % 7]
    product = make_product(REDIS_URL=redis_url, PROACTIVE_SMS_HOURS=f"{other_day} 08:00-20:00")
    await product.start(timeout=120)
    made = subprocess.run([sys.executable, str(ROOT / "run.py"), "apikey", "create", "gestion", "--scope", "write"],
                          env=product.env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    h = {"Authorization": f"Bearer {made.stdout.strip().splitlines()[-1]}"}
    api = f"{product.url}/api/v1/records/members"
    async with aiohttp.ClientSession() as http:
        for number, extra in (("M0300001", {"preferred_channel": "email"}),
                              ("M0300002", {"preferred_channel": "email", "notify_optout": "claims"}),
                              ("M0300003", {"preferred_channel": "email"}),
                              ("M0300004", {"preferred_channel": "sms"})):  # fmt: skip
            async with http.put(f"{api}/{number}", json=member(number, **extra), headers=h) as resp:
                assert resp.status == 200, await resp.text()

        async def pay(number: str, version: int, **fields: Any) -> None:
            body = {**PAID, "version": version, **fields}
            async with http.put(f"{api}/{number}/claims/CL{number[1:]}", json=body, headers=h) as resp:
                assert resp.status == 200, await resp.text()

        await pay("M0300001", 1)
        await pay("M0300001", 2, kind="pharmacie et optique")  # paid still: the same change, not told twice
        await pay("M0300002", 1)  # declined
        await pay("M0300004", 1)  # SMS, at night: waits
        await pay("M0300003", 1)
    received = await smtp_sink.wait_for(2, timeout=30)
    by_rcpt = {r.rcpt_tos[0]: r.message for r in received}
    assert sorted(by_rcpt) == ["m0300001@example.org", "m0300003@example.org"]
    mail = by_rcpt["m0300001@example.org"]
    assert mail["Subject"] == "Votre remboursement a été versé"
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert text.startswith(
        "Ma Mutuelle : un remboursement de 57,42 € a été versé le 5 décembre. Détail : répondez DETAIL."
    )
    # Exactly what was queued: one message each for the two members told, nothing for the others.
    queued = [f["m"] for _, f in await redis.xrange(keys.stream("bulk", 0))]
    assert len(queued) == 2 and all("M0300001" in q or "M0300003" in q for q in queued)
    assert fake_twilio.messages == []  # no SMS at night
    assert await redis.zrange(WAITING, 0, -1) == ["n.M0300004.claims.CL0300004.paid"]


async def test_changes_sent_in_one_bulk_request_are_told_in_one_message_and_never_again(
    make_product: Callable[..., Product], redis_url: str, redis: Redis, smtp_sink: SmtpSink
) -> None:
    product = make_product(REDIS_URL=redis_url)
    await product.start(timeout=120)
    made = subprocess.run([sys.executable, str(ROOT / "run.py"), "apikey", "create", "gestion", "--scope", "write"],
                          env=product.env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    h = {"Authorization": f"Bearer {made.stdout.strip().splitlines()[-1]}", "Content-Type": "application/x-ndjson"}
    number = "M0300011"
    fields = member(number, preferred_channel="email")
    lines = [
        {"kind": "members", "version": 1, "record": {"number": number, **{k: v for k, v in fields.items() if k != "version"}}},
        {"kind": "claims", "version": 1, "record": {"id": "CL0300011", "member": number, **PAID}},
        {"kind": "cards", "version": 1, "record": {"id": "TP0300011", "member": number, "status": "sent",
                                                   "dispatch_date": "2026-12-01"}},
    ]  # fmt: skip
    body = "\n".join(json.dumps(line) for line in lines).encode()
    async with aiohttp.ClientSession() as http:
        for _ in range(2):  # the same request twice: nothing new the second time
            async with http.post(f"{product.url}/api/v1/records/bulk", data=body, headers=h) as resp:
                assert resp.status == 200, await resp.text()
    [received] = await smtp_sink.wait_for(1, timeout=30)
    mail = received.message
    assert mail["Subject"] == "Des nouvelles de votre dossier"
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert text.startswith("Ma Mutuelle : un remboursement de 57,42 € a été versé le 5 décembre. Votre carte de tiers "
                           "payant a été envoyée le 1er décembre. Détail : répondez DETAIL.")  # fmt: skip
    await asyncio.sleep(3)
    assert len(smtp_sink.received) == 1
