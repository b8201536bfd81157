"""Issue 19: every member's mail gets in, whole; machine and forged mail is not answered.

``intake_cases.json`` holds mails written from the RFCs and the clients' documented reply and forward
layouts: long lines, bottom-posted, interleaved and top-posted replies, forwards, machine mail, a
forged member address failing DMARC, spam flagged by the MX. Each case gives the stored text and
whether the mail is answered. The table is checked twice: by the parser, then over SMTP through the
real listener, router and responder (every mail accepted with 250, and answered or not as the table says).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from redis.asyncio import Redis

from channels.email import EmailChannel, parse_email
from gateway import keys, unsubscribe
from gateway.app import ROUTER_GROUP, Gateway
from gateway.contacts import UNPROVEN, register_member
from gateway.envelope import Message
from gateway.responders import AckResponder
from gateway.settings import Settings

CASES: list[dict[str, Any]] = json.loads((Path(__file__).parent / "intake_cases.json").read_text())
AUTHSERV_ID = "mx.mutuelle.example"


def authserv(case: dict[str, Any]) -> str:
    return str(case.get("authserv_id", AUTHSERV_ID))


def check(case: dict[str, Any], msg: Message) -> None:
    want = case["expected"]
    if "text" in want:
        assert msg.text == want["text"]
    for part in want.get("text_contains", ()):
        assert part in msg.text
    for part in want.get("text_excludes", ()):
        assert part not in msg.text
    assert msg.automated is want.get("automated", False), msg.meta.get("automated_reason")
    assert msg.meta.get("automated_reason") == want.get("automated_reason")
    assert msg.automated is not want["answered"]
    if "sender_authentic" in want:
        assert msg.sender_authentic is want["sender_authentic"]
    if "attachments" in want:
        assert [[a.filename, a.content_type] for a in msg.attachments] == want["attachments"]
    assert bool(msg.meta.get("forwarded")) is want.get("forwarded", False)


@pytest.mark.parametrize("case", CASES, ids=[c["label"] for c in CASES])
def test_parse(case: dict[str, Any]) -> None:
    raw = case["raw"].encode("utf-8")
    if "line_chars" in case["expected"]:  # the mail really carries the long line it is named after
        assert max(len(line) for line in raw.split(b"\r\n")) >= case["expected"]["line_chars"] > 1000
    msg = parse_email(raw, case.get("envelope_from"), "mutuelle.example", authserv(case))
    check(case, msg)


@pytest.fixture
async def gateway(redis: Redis, settings_env: dict[str, str]) -> AsyncIterator[Gateway]:
    settings = Settings.from_env(
        {
            **settings_env,
            "EMAIL_AUTHSERV_ID": AUTHSERV_ID.upper(),  # compared without regard to case
            "FLOOD_PER_MIN": "0",  # one address writes most of the table
            "EMAIL_ANSWERED_PER_10MIN": "0",
            "EMAIL_ANSWERED_PER_DAY": "0",
        }
    )
    gw = Gateway(settings, redis, responder=AckResponder(), channel_names=["email"])
    await gw.start_channels()
    await gw.start_workers()
    yield gw
    await gw.stop_workers()
    await gw.stop_channels()


async def routed(redis: Redis, count: int, timeout_s: float = 30) -> None:
    """Wait until the router has handled (acknowledged) ``count`` inbound entries."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        [group] = [g for g in await redis.xinfo_groups(keys.stream("in", 0)) if g["name"] == ROUTER_GROUP]
        if await redis.xlen(keys.stream("in", 0)) == count and group["pending"] == 0 and group["lag"] == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the router did not handle every mail in time")


async def test_every_case_over_smtp_accepted_and_answered_as_the_table_says(
    gateway: Gateway, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    channel = gateway.channels["email"]
    assert isinstance(channel, EmailChannel)
    cases = [c for c in CASES if authserv(c) == AUTHSERV_ID]
    await register_member(redis, "M1234567", phone=None, email="jeanne.martin@example.fr")
    for case in cases:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=channel.port, timeout=30) as client:
            sender = case.get("envelope_from", "jeanne.martin@example.fr")
            errors, answer = await client.sendmail(sender, ["contact@mutuelle.example"], case["raw"].encode("utf-8"))
        assert (errors, answer) == ({}, "2.0.0 OK"), case["label"]
    await routed(redis, len(cases))
    stored = {m.external_id: m for m in (Message.from_json(f["m"]) for _, f in await redis.xrange(keys.stream("in", 0)))}
    answered = {
        Message.from_json(f["m"]).in_reply_to for _, f in await redis.xrange(keys.stream("out", 0))
    }
    for case in cases:
        mid = case["raw"].split("Message-ID: <", 1)[1].split(">", 1)[0]
        msg = stored[mid]
        check(case, msg)
        assert (msg.id in answered) is case["expected"]["answered"], case["label"]
    # The proven mails from Jeanne's address are hers; the forged ones sit with a contact of their own.
    proven = await redis.get(keys.address("mailto:jeanne.martin@example.fr"))
    forged = await redis.get(keys.address(UNPROVEN + "mailto:jeanne.martin@example.fr"))
    assert proven and forged and proven != forged
    assert await redis.hget(keys.contact(proven), "member_id") == "M1234567"
    assert await redis.hget(keys.contact(forged), "member_id") is None
    assert await redis.smembers(keys.member_contacts("M1234567")) == {proven}
    # Nothing refused, and no mail's words in the log.
    assert not [r for r in caplog.records if r.getMessage() == "e-mail refused"]
    assert "remboursement de mes lunettes" not in caplog.text and "12/03/1961" not in caplog.text


async def test_refusals_are_logged_with_their_reason(
    redis: Redis, settings_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings.from_env({**settings_env, "MAX_EMAIL_BYTES": "20000"})
    gw = Gateway(settings, redis, roles=frozenset({"web"}), channel_names=["email"])
    await gw.start_channels()
    try:
        channel = gw.channels["email"]
        assert isinstance(channel, EmailChannel)
        raw = b"From: a@example.fr\r\nMessage-ID: <big@example.fr>\r\nSubject: x\r\n\r\n" + b"secret " * 5000 + b"\r\n"
        caplog.set_level(logging.INFO)
        with pytest.raises(aiosmtplib.SMTPResponseException) as exc:
            async with aiosmtplib.SMTP(hostname="127.0.0.1", port=channel.port, timeout=30) as client:
                await client.sendmail("a@example.fr", ["contact@mutuelle.example"], raw)
        assert exc.value.code == 552
        [refusal] = [r for r in caplog.records if r.getMessage() == "e-mail refused"]
        # aiosmtplib announces the size (RFC 1870): refused at MAIL FROM, before any of the mail is sent.
        assert refusal.__dict__["code"] == "552" and "maximum message size" in refusal.__dict__["reason"]
        assert "secret" not in caplog.text
    finally:
        await gw.stop_channels()


async def test_a_forged_from_unsubscribes_nobody_but_a_token_still_counts(
    gateway: Gateway, redis: Redis
) -> None:
    """With EMAIL_AUTHSERV_ID, a mail to the List-Unsubscribe address from an unproven sender does not
    unsubscribe the address it shows; the signed token in its subject (our own notice's) still does."""
    channel = gateway.channels["email"]
    assert isinstance(channel, EmailChannel)
    await redis.hset(keys.member("M1234567"), mapping={"number": "M1234567", "email": "jeanne.martin@example.fr"})
    await register_member(redis, "M1234567", phone=None, email="jeanne.martin@example.fr")
    token = unsubscribe.token(gateway.settings.secret_key, "M1234567")
    opted_out = keys.info_opt_out("email")
    for n, (subject, ar) in enumerate([("Desabonnement", ""), ("Desabonnement", "mx.forger.example; dmarc=pass"),
                                       (token, "")]):  # fmt: skip
        raw = (f"{'Authentication-Results: ' + ar + chr(13) + chr(10) if ar else ''}"
               f"From: jeanne.martin@example.fr\r\nTo: desabonnement@mutuelle.example\r\n"
               f"Subject: {subject}\r\nMessage-ID: <unsub{n}@forger.example>\r\n\r\nstop\r\n")  # fmt: skip
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=channel.port, timeout=30) as client:
            await client.sendmail("bulk@forger.example", ["desabonnement@mutuelle.example"], raw.encode())
        member_out = bool(await redis.sismember(opted_out, "mailto:jeanne.martin@example.fr"))
        assert member_out is (n == 2), subject
