"""Members' rights end to end against ``run.py serve``: a member writes by SMS and e-mail, asks for a
callback and receives a campaign notice; ``run.py member export`` gives all of it back as JSON;
``run.py member erase`` removes it from every Redis key, stream and file, keeping the notice's date,
channel and status and the audit trail; another member's data is untouched. The canary values
planted in the member's record and messages are then searched in every Redis value, the product's
log and ``/metrics``."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import subprocess
import sys
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib
from redis.asyncio import Redis

from campaigns.rules import PARIS, is_public_holiday
from gateway import keys
from gateway.hours import holiday_name
from members.audit import verify_audit
from members.records import Claim, Complaint, Member, MemberStore
from tests.e2e.product import ROOT, Product
from tests.e2e.test_campaign_e2e import campaign_cli
from tests.e2e.test_sms_e2e import post_sms, quiet, redis_of
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import FakeTwilio

ERIN = Member("M7700001", "Zéphyrine", "Quasicanari", "1961-07-14", "+33199001111", "zephyrine.canari@example.fr",
              "confort", "Bretagne", "famille", "64.20", "2027-03-10")  # fmt: skip
OTHER = Member("M7700002", "Paul", "Martin", "1970-01-02", "+33199002222", "paul.martin@example.fr",
               "confort", "Bretagne", "famille", "64.20", "2027-03-10")  # fmt: skip
# Everything that would identify Erin or tell what she wrote.
CANARIES = ("Zéphyrine", "Quasicanari", "199001111", "zephyrine.canari", "1961-07-14", "CANARI-SMS-7781",
            "CANARI-MAIL-5512", "CANARI-RAPPEL-3390", "CANARI-DOSSIER-4471", "0199001111")  # fmt: skip


def member_cli(product: Product, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "member", *args],
        env={**product.env, "REDIS_URL": ""},  # the product's private Redis, found under VAR_DIR
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def everything_in(redis: Redis) -> str:
    """Every key and value in Redis, as one text to search."""
    parts: list[str] = []
    async for key in redis.scan_iter(count=1000):
        kind = await redis.type(key)
        value: Any
        if kind == "string":
            value = await redis.get(key)
        elif kind == "hash":
            value = await redis.hgetall(key)
        elif kind == "set":
            value = await redis.smembers(key)
        elif kind == "zset":
            value = await redis.zrange(key, 0, -1)
        elif kind == "list":
            value = await redis.lrange(key, 0, -1)
        elif kind == "stream":
            value = await redis.xrange(key)
        else:
            value = ""
        parts.append(f"{key} {value}")
    return json.loads(json.dumps("\n".join(parts)))  # one str, escapes as stored


async def test_export_then_erase_everywhere_keeping_only_the_proof(
    make_product: Callable[..., Product], fake_twilio: FakeTwilio, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    product = make_product(EMAIL_RATE_PER_S="500", SMS_RATE_PER_S="500")
    await product.start()
    redis = await redis_of(product)
    store = MemberStore(redis)
    async with redis.pipeline(transaction=False) as pipe:
        for m in (ERIN, OTHER):
            store.write(pipe, m)
        store.write_record(pipe, Claim("CANARI-DOSSIER-4471", ERIN.number, "2026-10-02", "pharmacie", "23.50",
                                       "18.80", "paid", "2026-10-09", True))  # fmt: skip
        store.write_record(pipe, Complaint("REC-2026-000777", ERIN.number, "2026-11-02", False, "2026-11-12", "open",
                                           "remboursement", ""))  # fmt: skip
        await pipe.execute()

    # Erin and Paul write by SMS; Erin also by e-mail and asks for a callback.
    async with aiohttp.ClientSession() as session:
        assert (await post_sms(session, product, ERIN.phone, "CANARI-SMS-7781 ma carte"))[0] == 200
        assert (await post_sms(session, product, OTHER.phone, "PAUL-RESTE-9001 bonjour"))[0] == 200
        day = dt.date.today() + dt.timedelta(days=1)
        while day.weekday() >= 5 or holiday_name(day):  # the callback form refuses public holidays
            day += dt.timedelta(days=1)
        callback = {"phone": "01 99 00 11 11", "date": day.isoformat(), "slot": "14:00-18:00",
                    "reason": "remboursement", "comment": "CANARI-RAPPEL-3390"}  # fmt: skip
        async with session.post(f"{product.url}/api/callbacks", json=callback) as resp:
            assert resp.status == 201, await resp.text()
    mail = EmailMessage()
    mail["From"] = f"Zéphyrine Quasicanari <{ERIN.email}>"
    mail["To"] = "contact@mutuelle.example"
    mail["Subject"] = "Ma demande"
    mail["Message-ID"] = "<canari-1@example.fr>"
    mail.set_content("CANARI-MAIL-5512 pourriez-vous me rappeler ?")
    await aiosmtplib.send(mail, hostname="127.0.0.1", port=product.smtp_port)

    # A campaign notice to both (notices never go on Sundays or public holidays in Paris).
    today = dt.datetime.now(PARIS).date()
    notices = not (today.isoweekday() == 7 or is_public_holiday(today))
    cid = ""
    if notices:
        spec = {
            "kind": "information", "title": "Nouveau service", "channels": ["sms"],
            "effective_date": (today + dt.timedelta(days=70)).replace(day=1).isoformat(),
            "values": {"message": "Un nouveau service de téléconsultation est ouvert."},
            "audience": {"members": [ERIN.number, OTHER.number]},
            "window": {"start": "00:00", "end": "23:59", "weekdays": [1, 2, 3, 4, 5, 6]},
        }  # fmt: skip
        path = tmp_path / "campagne.json"
        path.write_text(json.dumps(spec), encoding="utf-8")
        cid = campaign_cli(product, "create", str(path)).strip()
        campaign_cli(product, "schedule", cid)
    expected_sms = 2 + 1 + (2 if notices else 0)  # two acks, the callback confirmation, two notices
    await fake_twilio.wait_for(expected_sms, timeout=30)
    await smtp_sink.wait_for(1, timeout=15)  # the acknowledgement of Erin's e-mail
    await quiet(redis)

    # Export: everything held on Erin.
    out = tmp_path / "erin.json"
    done = member_cli(product, "export", ERIN.number, "--out", str(out))
    assert done.returncode == 0, done.stderr
    exported = json.loads(out.read_text(encoding="utf-8"))
    assert exported["member"]["last_name"] == "Quasicanari"
    assert exported["records"]["claims"][0]["id"] == "CANARI-DOSSIER-4471"
    texts = [m["text"] for c in exported["conversations"] for m in c["messages"]]
    assert any("CANARI-SMS-7781" in t for t in texts) and any("CANARI-MAIL-5512" in t for t in texts)
    assert any(m["direction"] == "out" for c in exported["conversations"] for m in c["messages"])  # our answers
    assert exported["callbacks"][0]["comment"] == "CANARI-RAPPEL-3390"
    assert {a for c in exported["contacts"] for a in c["addresses"]} >= {f"tel:{ERIN.phone}", f"mailto:{ERIN.email}"}
    if notices:
        [notice] = exported["notices"]
        assert notice["campaign"] == cid and notice["channel"] == "sms" and "téléconsultation" in notice["text"]
    assert "PAUL-RESTE-9001" not in out.read_text(encoding="utf-8")

    # Erase: nothing of Erin left anywhere, the proof kept, Paul untouched.
    refused = member_cli(product, "erase", ERIN.number)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    done = member_cli(product, "erase", ERIN.number, "--yes", "--by", "dpo")
    assert done.returncode == 0, done.stderr
    assert "conservé : journal d'audit" in done.stdout
    await quiet(redis)
    stored = await everything_in(redis)
    left = [c for c in CANARIES if c in stored]
    assert left == [], f"still in Redis after erasure: {left}"
    assert "PAUL-RESTE-9001" in stored and await store.get(OTHER.number) is not None
    assert await store.get(ERIN.number) is None
    audit = await redis.xrange(keys.member_audit(ERIN.number))
    assert audit[-1][1]["what"] == "erased" and audit[-1][1]["agent"] == "dpo"
    assert await verify_audit(redis, ERIN.number) == []  # kept whole through the erasure
    if notices:
        proof = {
            row["Numéro d'adhérent"]: row
            for row in csv.DictReader(io.StringIO(campaign_cli(product, "proof", cid)), delimiter=";")
        }
        assert proof[ERIN.number]["Canal"] == "SMS" and proof[ERIN.number]["Envoi"]
        assert f"campagne {cid}" in done.stdout
    again = json.loads(member_cli(product, "export", ERIN.number).stdout)
    assert again["member"] is None and again["conversations"] == [] and again["callbacks"] == []

    # Nor in the log or the metrics, before or after.
    async with aiohttp.ClientSession() as session, session.get(f"{product.url}/metrics") as resp:
        metrics = await resp.text()
    await redis.aclose()
    assert product.stop() == 0
    logged = product.log_path.read_text(encoding="utf-8", errors="replace")
    assert [c for c in CANARIES if c in logged] == [] and [c for c in CANARIES if c in metrics] == []
    assert "Traceback" not in logged


async def test_retention_purges_old_conversations_and_keeps_recent_ones(
    make_product: Callable[..., Product], fake_twilio: FakeTwilio
) -> None:
    """A conversation idle for longer than the retention is purged by the scheduled job, with its
    stream entries; a recent one stays."""
    product = make_product(RETENTION_DAYS="1", RETENTION_EVERY_S="1")
    await product.start()
    redis = await redis_of(product)
    async with aiohttp.ClientSession() as session:
        await post_sms(session, product, "+33199003333", "VIEUX-MESSAGE-1")
        await post_sms(session, product, "+33199004444", "RECENT-MESSAGE-2")
    await fake_twilio.wait_for(2, timeout=20)
    await quiet(redis)
    old_conv = await redis.get(keys.open_conversation(str(await redis.get(keys.address("tel:+33199003333"))), "sms"))
    # Make the first conversation two days old, as if nobody had written since.
    two_days_ago = int((dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).timestamp() * 1000)
    await redis.hset(keys.conversation(old_conv), "last_ms", two_days_ago)
    await redis.zadd(keys.RETENTION_INDEX, {old_conv: two_days_ago})
    old_msgs = await redis.zrange(keys.conversation_log(old_conv), 0, -1)
    assert old_msgs
    for _ in range(100):
        if not await redis.exists(keys.conversation(old_conv)):
            break
        await asyncio.sleep(0.1)
    assert not await redis.exists(keys.conversation(old_conv), keys.conversation_log(old_conv))
    assert not any([await redis.exists(keys.message(old_conv, m)) for m in old_msgs])
    recent = await redis.get(keys.open_conversation(str(await redis.get(keys.address("tel:+33199004444"))), "sms"))
    assert await redis.zcard(keys.conversation_log(recent)) == 2  # the message and its answer
    await redis.aclose()
    assert product.stop() == 0
    assert "retention purge" in product.log_path.read_text(encoding="utf-8")
