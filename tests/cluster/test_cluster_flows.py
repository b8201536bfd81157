"""The product on a real Redis Cluster (3 masters, 3 replicas), started as a user starts it
(``run.py serve`` with ``REDIS_URL=redis+cluster://...``, ``STREAM_SHARDS=6``)."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import aiohttp
import aiosmtplib
import pytest
from redis.asyncio import Redis

from campaigns.rules import PARIS, is_public_holiday
from gateway import keys
from gateway.hours import holiday_name
from gateway.responders import ACK_TEXT
from members.audit import verify_audit
from members.records import Member, MemberStore
from tests.cluster.conftest import SHARDS
from tests.cluster.local_cluster import LocalCluster
from tests.e2e.product import ROOT, Product
from tests.e2e.test_member_rights import everything_in
from tests.e2e.test_sms_e2e import post_sms
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import FakeTwilio


async def quiet(redis: Redis, timeout: float = 20.0) -> None:
    """Nothing pending, lagging or waiting for a retry on any shard."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        busy = 0
        for shard in range(SHARDS):
            for kind, group in (("in", "router"), ("out", "dispatcher"), ("bulk", "dispatcher")):
                stream = keys.stream(kind, shard)
                if await redis.exists(stream):
                    busy += (await redis.xpending(stream, group))["pending"]
                    busy += sum(int(g.get("lag") or 0) for g in await redis.xinfo_groups(stream))
            busy += await redis.zcard(keys.retry(shard))
        if busy == 0:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not quiet: {busy} entries pending, lagging or waiting")
        await asyncio.sleep(0.1)


async def test_sms_in_reply_out_once_with_streams_over_every_master(
    cluster: LocalCluster, cluster_redis: Redis, make_product: Callable[..., Product], fake_twilio: FakeTwilio
) -> None:
    product = make_product()
    await product.start()
    members = [f"+336399810{i:02d}" for i in range(24)]
    async with aiohttp.ClientSession() as session:
        first = await asyncio.gather(*(post_sms(session, product, m, "Bonjour") for m in members))
        assert all(status == 200 for status, _ in first)
        # Twilio retries each one: the same MessageSid again, answered 200 and not handled twice.
        again = await asyncio.gather(
            *(post_sms(session, product, m, "Bonjour", sid) for m, (_, sid) in zip(members, first, strict=True))
        )
        assert all(status == 200 for status, _ in again)
    await fake_twilio.wait_for(len(members), timeout=30)
    await quiet(cluster_redis)
    assert sorted(m.to for m in fake_twilio.messages) == sorted(members)
    assert {m.body for m in fake_twilio.messages} == {ACK_TEXT}
    # The inbound shards are spread over the three masters.
    owners = {cluster_redis.get_node_from_key(keys.stream("in", s)).name for s in range(SHARDS)}
    assert len(owners) == 3
    assert sum([await cluster_redis.xlen(keys.stream("in", s)) for s in range(SHARDS)]) == len(members)
    assert product.stop() == 0
    assert_clean_logs(product)


def assert_clean_logs(product: Product) -> None:
    logs = product.logs()
    for bad in ("Traceback", "CROSSSLOT", "MOVED", "ClusterError"):
        assert bad not in logs, logs[max(0, logs.find(bad) - 1500) : logs.find(bad) + 1500]
    errors = re.findall(r'.*"level": ?"error".*', logs)
    assert not errors, errors[:5]


def cli(product: Product, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``run.py <args>`` on the product's cluster (its REDIS_URL is the cluster URL)."""
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args],
        env=product.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
    )


async def test_email_in_threaded_reply_out(
    cluster_redis: Redis, make_product: Callable[..., Product], smtp_sink: SmtpSink
) -> None:
    product = make_product()
    await product.start()
    mail = EmailMessage()
    mail["From"] = "Jeanne Martin <jeanne.martin@example.fr>"
    mail["To"] = "contact@mutuelle.example"
    mail["Subject"] = "Remboursement lunettes"
    mail["Message-ID"] = "<CLU1234@mail.example.fr>"
    mail.set_content("Bonjour,\nOù en est le remboursement de mes lunettes ?\nJeanne")
    for _ in range(2):  # the relay delivers twice
        await aiosmtplib.send(mail, hostname="127.0.0.1", port=product.smtp_port)
    [got] = await smtp_sink.wait_for(1, timeout=15)
    reply = got.message
    assert got.rcpt_tos == ["jeanne.martin@example.fr"] and reply["In-Reply-To"] == "<CLU1234@mail.example.fr>"
    plain = reply.get_body(preferencelist=("plain",))
    assert plain is not None and ACK_TEXT in plain.get_content()
    answer = EmailMessage()  # the member answers our reply: same thread
    answer["From"] = "jeanne.martin@example.fr"
    answer["To"] = "contact@mutuelle.example"
    answer["Subject"] = "Re: Re: Remboursement lunettes"
    answer["Message-ID"] = "<CLU5678@mail.example.fr>"
    answer["In-Reply-To"] = reply["Message-ID"]
    answer["References"] = f"<CLU1234@mail.example.fr> {reply['Message-ID']}"
    answer.set_content("Merci !")
    await aiosmtplib.send(answer, hostname="127.0.0.1", port=product.smtp_port)
    second = (await smtp_sink.wait_for(2, timeout=15))[1].message
    assert reply["Message-ID"] in second["References"]
    await quiet(cluster_redis)
    assert len(smtp_sink.received) == 2
    assert product.stop() == 0
    assert_clean_logs(product)


async def test_campaign_sent_once_per_member_with_proof(
    cluster_redis: Redis,
    make_product: Callable[..., Product],
    fake_twilio: FakeTwilio,
    smtp_sink: SmtpSink,
    tmp_path: Path,
) -> None:
    today = dt.datetime.now(PARIS).date()
    if today.isoweekday() == 7 or is_public_holiday(today):
        pytest.skip("notices are never sent on a Sunday or a public holiday in Paris")
    product = make_product(EMAIL_RATE_PER_S="500", SMS_RATE_PER_S="500")
    await product.start()
    members = [
        Member(f"M6{i:06d}", "Camille", f"Durand{i}", "1975-03-12", f"+3319700{i:04d}" if i % 2 else "",
               "" if i % 2 else f"c{i}@example.fr", "confort", "Bretagne", "famille", "64.20", "2027-03-10")
        for i in range(1, 121)
    ]  # fmt: skip
    store = MemberStore(cluster_redis)
    async with cluster_redis.pipeline(transaction=False) as pipe:
        for m in members:
            store.write(pipe, m)
        await pipe.execute()
    spec = {
        "kind": "contribution_change",
        "title": "Évolution de votre cotisation",
        "effective_date": (today + dt.timedelta(days=70)).replace(day=1).isoformat(),
        "channels": ["sms", "email"],
        "values": {"new_contribution": "67.10", "change_percent": "4.5"},
        "audience": {"members": [m.number for m in members]},
        "window": {"start": "00:00", "end": "23:59", "weekdays": [1, 2, 3, 4, 5, 6]},
    }
    path = tmp_path / "campagne.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    created = cli(product, "campaign", "create", str(path))
    assert created.returncode == 0, created.stderr
    cid = created.stdout.strip()
    scheduled = cli(product, "campaign", "schedule", cid)
    assert "Programmée : 120 adhérents" in scheduled.stdout, scheduled.stderr
    for _ in range(300):
        if len(fake_twilio.messages) + len(smtp_sink.received) >= len(members):
            break
        await asyncio.sleep(0.1)
    await quiet(cluster_redis)
    sms = Counter(m.to for m in fake_twilio.messages)
    mail = Counter(r.rcpt_tos[0] for r in smtp_sink.received)
    assert sms == Counter({m.phone for m in members if m.phone})
    assert mail == Counter({m.email for m in members if m.email})
    proof = list(csv.DictReader(io.StringIO(cli(product, "campaign", "proof", cid).stdout), delimiter=";"))
    assert len(proof) == 120 and all(row["Envoi"] and row["Dans les délais"] == "oui" for row in proof)
    assert product.stop() == 0
    assert_clean_logs(product)


ERIN = Member("M7700001", "Zéphyrine", "Quasicanari", "1961-07-14", "+33199001111", "zephyrine.canari@example.fr",
              "confort", "Bretagne", "famille", "64.20", "2027-03-10")  # fmt: skip
OTHER = Member("M7700002", "Paul", "Martin", "1970-01-02", "+33199002222", "paul.martin@example.fr",
               "confort", "Bretagne", "famille", "64.20", "2027-03-10")  # fmt: skip
CANARIES = ("Zéphyrine", "Quasicanari", "199001111", "zephyrine.canari", "CANARI-SMS-7781", "CANARI-MAIL-5512",
            "CANARI-RAPPEL-3390")  # fmt: skip


async def test_member_export_then_erase_on_every_master(
    cluster_redis: Redis,
    make_product: Callable[..., Product],
    fake_twilio: FakeTwilio,
    smtp_sink: SmtpSink,
    tmp_path: Path,
) -> None:
    product = make_product()
    await product.start()
    store = MemberStore(cluster_redis)
    async with cluster_redis.pipeline(transaction=False) as pipe:
        for m in (ERIN, OTHER):
            store.write(pipe, m)
        await pipe.execute()
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
    mail["Message-ID"] = "<canari-clu@example.fr>"
    mail.set_content("CANARI-MAIL-5512 pourriez-vous me rappeler ?")
    await aiosmtplib.send(mail, hostname="127.0.0.1", port=product.smtp_port)
    await fake_twilio.wait_for(3, timeout=30)  # two acks, the callback's confirmation
    await smtp_sink.wait_for(1, timeout=15)
    await quiet(cluster_redis)

    out = tmp_path / "erin.json"
    done = cli(product, "member", "export", ERIN.number, "--out", str(out))
    assert done.returncode == 0, done.stderr
    exported = json.loads(out.read_text(encoding="utf-8"))
    assert exported["member"]["last_name"] == "Quasicanari"
    texts = [m["text"] for c in exported["conversations"] for m in c["messages"]]
    assert any("CANARI-SMS-7781" in t for t in texts) and any("CANARI-MAIL-5512" in t for t in texts)
    assert exported["callbacks"][0]["comment"] == "CANARI-RAPPEL-3390"  # found by a SCAN of every master
    assert "PAUL-RESTE-9001" not in out.read_text(encoding="utf-8")

    done = cli(product, "member", "erase", ERIN.number, "--yes", "--by", "dpo")
    assert done.returncode == 0, done.stderr
    await quiet(cluster_redis)
    stored = await everything_in(cluster_redis)
    assert [c for c in CANARIES if c in stored] == []
    assert "PAUL-RESTE-9001" in stored and await store.get(OTHER.number) is not None
    assert await store.get(ERIN.number) is None
    assert await verify_audit(cluster_redis, ERIN.number) == []
    again = json.loads(cli(product, "member", "export", ERIN.number).stdout)
    assert again["member"] is None and again["conversations"] == [] and again["callbacks"] == []
    assert product.stop() == 0
    assert_clean_logs(product)


async def test_retention_purges_old_conversations_on_the_cluster(
    cluster_redis: Redis, make_product: Callable[..., Product], fake_twilio: FakeTwilio
) -> None:
    product = make_product(RETENTION_DAYS="1", RETENTION_EVERY_S="1")
    await product.start()
    redis = cluster_redis
    async with aiohttp.ClientSession() as session:
        await post_sms(session, product, "+33199003333", "VIEUX-MESSAGE-1")
        await post_sms(session, product, "+33199004444", "RECENT-MESSAGE-2")
    await fake_twilio.wait_for(2, timeout=20)
    await quiet(redis)
    old_conv = await redis.get(keys.open_conversation(str(await redis.get(keys.address("tel:+33199003333"))), "sms"))
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
    assert await redis.zcard(keys.conversation_log(recent)) == 2
    assert product.stop() == 0
    assert "retention purge" in product.logs()
    assert_clean_logs(product)
