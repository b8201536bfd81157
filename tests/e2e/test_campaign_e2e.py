"""A campaign end to end against ``run.py serve``: created and scheduled with ``run.py campaign``,
sent by the worker through the real dispatcher to the loopback SMTP and Twilio servers, one
notice per member, opted-out members on their next channel, proof of notice exported."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
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

from campaigns.rules import PARIS, fr_date, is_public_holiday
from gateway import keys
from members.records import Member, MemberStore
from tests.e2e.product import ROOT, Product
from tests.e2e.test_sms_e2e import redis_of
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import FakeTwilio

TODAY = dt.datetime.now(PARIS)
pytestmark = pytest.mark.skipif(
    TODAY.isoweekday() == 7 or is_public_holiday(TODAY.date()),
    reason="notices are never sent on a Sunday or a public holiday in Paris: nothing to observe today",
)


async def load(redis: Redis, members: list[Member]) -> None:
    store = MemberStore(redis)
    for start in range(0, len(members), 2000):
        async with redis.pipeline(transaction=False) as pipe:
            for m in members[start : start + 2000]:
                store.write(pipe, m)
            await pipe.execute()


def campaign_cli(product: Product, *args: str, stdin: str = "") -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "campaign", *args],
        env={**product.env, "REDIS_URL": ""},  # the product's private Redis, found under VAR_DIR
        cwd=ROOT,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_campaign_sent_once_per_member_with_opt_out_fallback_and_proof(
    make_product: Callable[..., Product], fake_twilio: FakeTwilio, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    product = make_product(EMAIL_RATE_PER_S="500", SMS_RATE_PER_S="500")
    await product.start()
    redis: Redis = await redis_of(product)
    members = [
        Member(f"M9{i:06d}", "Camille", f"Durand{i}", "1975-03-12", f"+3319900{i:04d}" if i % 2 else "",
               f"m{i}@example.fr" if i % 3 else "", "confort", "Bretagne", "famille", "64.20", "2027-03-10")
        for i in range(1, 301)
    ]  # fmt: skip
    await load(redis, members)
    await redis.sadd(keys.opt_out("sms"), "tel:+33199000005")  # M9000005 said STOP: e-mail instead
    effective = (TODAY.date() + dt.timedelta(days=70)).replace(day=1)
    spec = {
        "kind": "contribution_change",
        "title": "Évolution de votre cotisation",
        "effective_date": effective.isoformat(),
        "channels": ["sms", "email"],
        "values": {"new_contribution": "67.10", "change_percent": "4.5"},
        "audience": {"members": [m.number for m in members]},
        "window": {"start": "00:00", "end": "23:59", "weekdays": [1, 2, 3, 4, 5, 6]},
    }
    path = tmp_path / "campagne.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    cid = campaign_cli(product, "create", str(path)).strip()
    assert "300 adhérents" in campaign_cli(product, "count", cid)
    preview = campaign_cli(product, "preview", cid)
    assert "[GSM-7, 1 segment(s)" in preview
    assert "Programmée : 300 adhérents" in campaign_cli(product, "schedule", cid)

    reachable = [m for m in members if m.phone or m.email]
    for _ in range(600):
        if len(fake_twilio.messages) + len(smtp_sink.received) >= len(reachable):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # nothing more may arrive
    sms = Counter(m.to for m in fake_twilio.messages)
    mail = Counter(r.rcpt_tos[0] for r in smtp_sink.received)
    assert all(n == 1 for n in sms.values()) and all(n == 1 for n in mail.values())
    expected_sms = {m.phone for m in members if m.phone and m.number != "M9000005"}
    expected_mail = {m.email for m in members if not m.phone or m.number == "M9000005"} - {""}
    assert set(sms) == expected_sms and set(mail) == expected_mail
    notice = next(r.message for r in smtp_sink.received if r.rcpt_tos == ["m5@example.fr"])
    assert notice["Subject"] == f"Évolution de votre cotisation au {fr_date(effective)}"
    assert notice["Auto-Submitted"] == "auto-generated" and notice["List-Unsubscribe"] is None  # mandatory notice
    assert notice.get_body(preferencelist=("html",)) is not None

    proof = list(csv.DictReader(io.StringIO(campaign_cli(product, "proof", cid)), delimiter=";"))
    assert len(proof) == 300
    by_member = {row["Numéro d'adhérent"]: row for row in proof}
    assert by_member["M9000005"]["Canal"] == "e-mail"
    unreachable = [m.number for m in members if not m.phone and not m.email]
    assert all(by_member[n]["Canal"] == "courrier" for n in unreachable)
    assert all(row["Dans les délais"] == "oui" for row in proof if row["Envoi"])
    report = json.loads(campaign_cli(product, "report", cid))
    assert report["postal"] == len(unreachable) and report["state"] in ("sending", "done")
    await redis.aclose()
    assert product.stop() == 0


@pytest.mark.timeout(420)
async def test_kill_9_mid_campaign_of_10000_each_member_notified_once(
    make_product: Callable[..., Product], fake_twilio: FakeTwilio, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    env = {"EMAIL_RATE_PER_S": "1000", "SMS_RATE_PER_S": "1000", "CAMPAIGN_RECLAIM_S": "5"}
    product = make_product(**env)
    await product.start()
    redis: Redis = await redis_of(product)
    members = [
        Member(f"M8{i:06d}", "Louis", f"Martin{i}", "1960-07-01", f"+3335301{i % 10000:04d}" if i % 2 else "",
               "" if i % 2 else f"n{i}@example.fr", "integral", "Occitanie", "senior", "98.10", "2027-03-10")
        for i in range(1, 10_001)
    ]  # fmt: skip
    await load(redis, members)
    await redis.aclose()
    effective = (TODAY.date() + dt.timedelta(days=70)).replace(day=1)
    spec = {
        "kind": "benefit_change",
        "title": "Évolution de vos garanties",
        "effective_date": effective.isoformat(),
        "channels": ["sms", "email"],
        "values": {"change_summary": "le forfait optique passe à 150 € par an."},
        "audience": {"members": [m.number for m in members]},
        "window": {"start": "00:00", "end": "23:59", "weekdays": [1, 2, 3, 4, 5, 6]},
    }
    path = tmp_path / "garanties.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    cid = campaign_cli(product, "create", str(path)).strip()
    assert "Programmée : 10000 adhérents" in campaign_cli(product, "schedule", cid)

    def received() -> int:
        return len(fake_twilio.messages) + len(smtp_sink.received)

    for _ in range(1200):
        if received() >= 3000:
            break
        await asyncio.sleep(0.05)
    product.kill9()  # supervisor, web and worker die mid-campaign; the private Redis survives
    at_kill = received()
    assert 0 < at_kill < 10_000
    again = make_product(**env)
    await again.start()
    last, stable = -1, 0
    for _ in range(2400):
        now = received()
        stable = stable + 1 if now == last else 0
        last = now
        if now >= 10_000 and stable >= 20:
            break
        await asyncio.sleep(0.1)
    sms = Counter(m.to for m in fake_twilio.messages)
    mail_ids: dict[str, set[str]] = {}
    for r in smtp_sink.received:
        mail_ids.setdefault(r.rcpt_tos[0], set()).add(str(r.message["Message-ID"]))
    assert set(sms) == {m.phone for m in members if m.phone}
    twice = [n for n, c in sms.items() if c > 1]
    assert not twice, [(m.to, m.status_callback) for m in fake_twilio.messages if m.to in twice][:6]  # no SMS twice
    assert set(mail_ids) == {m.email for m in members if m.email}
    # One notice per member: an e-mail interrupted by the kill may be delivered again, with its Message-ID.
    assert all(len(ids) == 1 for ids in mail_ids.values())
    duplicates = len(smtp_sink.received) - len(mail_ids)
    print(f"kill -9 after {at_kill} of 10,000 notices: 5,000 SMS once each; 5,000 e-mails, {duplicates} redelivered")
    assert again.stop() == 0


async def test_information_can_be_declined_by_link_or_mail_and_mandatory_notices_still_go(
    make_product: Callable[..., Product], fake_twilio: FakeTwilio, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    product = make_product(EMAIL_RATE_PER_S="500", SMS_RATE_PER_S="500")
    product.env["PUBLIC_URL"] = product.url
    await product.start()
    redis: Redis = await redis_of(product)
    members = [
        Member(f"M8{i:06d}", "Camille", f"Durand{i}", "1975-03-12", f"+3319800{i:04d}", f"u{i}@example.fr",
               "confort", "Bretagne", "famille", "64.20", "2027-03-10")
        for i in range(1, 4)
    ]  # fmt: skip
    await load(redis, members)
    effective = (TODAY.date() + dt.timedelta(days=70)).replace(day=1)

    async def send(kind: str, n_expected: int) -> None:
        spec = {
            "kind": kind, "title": "Votre espace adhérent évolue", "effective_date": effective.isoformat(),
            "channels": ["email", "sms"], "audience": {"members": [m.number for m in members]},
            "window": {"start": "00:00", "end": "23:59", "weekdays": [1, 2, 3, 4, 5, 6]},
            "values": {"message": "Il change d'adresse le mois prochain."} if kind == "information"
            else {"new_contribution": "67.10", "change_percent": "4.5"},
        }  # fmt: skip
        path = tmp_path / f"{kind}.json"
        path.write_text(json.dumps(spec), encoding="utf-8")
        campaign_cli(product, "schedule", campaign_cli(product, "create", str(path)).strip())
        for _ in range(300):
            if len(fake_twilio.messages) + len(smtp_sink.received) >= n_expected:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        assert len(fake_twilio.messages) + len(smtp_sink.received) == n_expected

    await send("information", 3)
    mails = {r.rcpt_tos[0]: r.message for r in smtp_sink.received}
    assert set(mails) == {"u1@example.fr", "u2@example.fr", "u3@example.fr"}
    header = str(mails["u1@example.fr"]["List-Unsubscribe"])
    link, mailto = (part.strip(" <>") for part in header.split(","))
    assert link.startswith(f"{product.url}/desabonnement/M8000001.") and mailto.startswith("mailto:desabonnement@")
    assert mails["u1@example.fr"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    async with aiohttp.ClientSession() as http:
        async with http.get(link) as page:  # a link scanner opening it changes nothing
            assert page.status == 200 and "Me désabonner" in await page.text()
        assert not await redis.smembers(keys.info_opt_out("email"))
        async with http.post(link.replace("M8000001.", "M8000003."), data={"List-Unsubscribe": "One-Click"}) as forged:
            assert forged.status == 404  # a token made for another member
        async with http.post(link, data={"List-Unsubscribe": "One-Click"}) as done:  # as Gmail does (RFC 8058)
            assert done.status == 200 and "Vous ne recevrez plus" in await done.text()
    # Member 2 uses the mailto instead: a mail to the address, the token as subject, to our SMTP listener.
    request = EmailMessage()
    request["From"], request["To"] = "u2@example.fr", mailto.removeprefix("mailto:").split("?")[0]
    request["Subject"] = str(mails["u2@example.fr"]["List-Unsubscribe"]).split("subject=")[1].rstrip(">")
    request.set_content("")
    await aiosmtplib.send(request, hostname="127.0.0.1", port=product.smtp_port)
    assert await redis.smembers(keys.info_opt_out("email")) == {"mailto:u1@example.fr", "mailto:u2@example.fr"}
    assert [e["what"] for _, e in await redis.xrange(keys.member_audit("M8000002"))] == [
        "unsubscribed_information_email"
    ]

    smtp_sink.received.clear()
    await send("information", 3)  # members 1 and 2 get this one by SMS
    assert {r.rcpt_tos[0] for r in smtp_sink.received} == {"u3@example.fr"}
    assert {m.to for m in fake_twilio.messages} == {"+33198000001", "+33198000002"}
    smtp_sink.received.clear()
    await send("contribution_change", 3 + 2)  # a mandatory notice goes by e-mail to all three
    assert {r.rcpt_tos[0] for r in smtp_sink.received} == {"u1@example.fr", "u2@example.fr", "u3@example.fr"}
    assert all(r.message["List-Unsubscribe"] is None for r in smtp_sink.received)
    await redis.aclose()
    assert product.stop() == 0


async def test_a_bounced_notice_goes_out_on_the_next_channel(
    make_product: Callable[..., Product], fake_twilio: FakeTwilio, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    product = make_product(EMAIL_RATE_PER_S="500", SMS_RATE_PER_S="500")
    await product.start()
    redis: Redis = await redis_of(product)
    members = [
        Member(f"M7{i:06d}", "Camille", f"Durand{i}", "1975-03-12", f"+3319700{i:04d}", f"b{i}@example.fr",
               "confort", "Bretagne", "famille", "64.20", "2027-03-10")
        for i in range(1, 3)
    ]  # fmt: skip
    await load(redis, members)
    spec = {
        "kind": "benefit_change", "title": "Vos garanties évoluent",
        "effective_date": (TODAY.date() + dt.timedelta(days=70)).replace(day=1).isoformat(),
        "channels": ["email", "sms"],
        "window": {"start": "00:00", "end": "23:59", "weekdays": [1, 2, 3, 4, 5, 6]},
        "values": {"change_summary": "Le forfait optique passe à 200 €."},
    }  # fmt: skip
    path = tmp_path / "garanties.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    audience = tmp_path / "liste.csv"  # the audience as a spreadsheet exports it
    audience.write_bytes(
        "N° adhérent;Nom\r\n".encode("cp1252") + b"".join(f"{m.number};{m.last_name}\r\n".encode() for m in members)
    )
    cid = campaign_cli(product, "create", str(path), "--list", str(audience)).strip()
    campaign_cli(product, "schedule", cid)
    for _ in range(300):
        if len(smtp_sink.received) >= 2:
            break
        await asyncio.sleep(0.1)
    notice = next(r.message for r in smtp_sink.received if r.rcpt_tos == ["b1@example.fr"])
    # The member's provider refuses the address a while later: a DSN comes back to our SMTP listener.
    dsn = (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.fr>\r\nTo: notices@mutuelle.example\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="R"\r\n\r\n'
        "--R\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
        "--R\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.fr\r\n\r\n"
        "Final-Recipient: rfc822; b1@example.fr\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n"
        f"--R\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {notice['Message-ID']}\r\n"
        "To: b1@example.fr\r\n--R--\r\n"
    )
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=product.smtp_port) as smtp:  # null sender, as DSNs
        await smtp.sendmail("", ["notices@mutuelle.example"], dsn.encode())
    for _ in range(100):
        if fake_twilio.messages:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(2.0)  # member 2's notice was not refused: no SMS for them
    assert [m.to for m in fake_twilio.messages] == ["+33197000001"]
    assert "Le forfait optique passe à 200 €." in fake_twilio.messages[0].body
    assert len(smtp_sink.received) == 2  # the bounce was not answered
    rows = csv.DictReader(io.StringIO(campaign_cli(product, "proof", cid)), delimiter=";")
    proof = {row["Numéro d'adhérent"]: row for row in rows}
    assert (proof["M7000001"]["Canal"], proof["M7000001"]["Canaux essayés avant"]) == ("SMS", "e-mail")
    assert (proof["M7000002"]["Canal"], proof["M7000002"]["Canaux essayés avant"]) == ("e-mail", "")
    first = await redis.hgetall(keys.message(f"c.{cid}.M7000001", f"c.{cid}.M7000001.0"))
    assert (first["status"], first["error_code"]) == ("failed", "5.1.1")
    await redis.aclose()
    assert product.stop() == 0
