"""Hostile and malformed e-mails (malformed.py) delivered over SMTP to the real listener, with the
router and the dispatcher running: each is stored with sanitised text (and answered unless it is
automated) or refused with a clear 5xx reason; nothing crashes, nothing hangs, no traceback is logged."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import re
import time
from collections.abc import AsyncIterator

import aiosmtplib
import pytest
from redis.asyncio import Redis

from channels.email import EmailChannel
from channels.email.parse import MAX_TEXT
from gateway import keys
from gateway.app import Gateway
from gateway.envelope import Message
from gateway.responders import AckResponder
from gateway.settings import Settings
from tests.channels.email.malformed import corpus

MAX_BYTES = 4_000_000
PER_MAIL_S = 10.0  # a mail the listener takes longer than this over is a hang (the machine is shared)
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


@pytest.fixture
async def gateway(redis: Redis, settings_env: dict[str, str]) -> AsyncIterator[Gateway]:
    settings = Settings.from_env(
        {
            **settings_env,
            "SMTP_LISTEN_PORT": "0",
            "MAX_EMAIL_BYTES": str(MAX_BYTES),
            "FLOOD_PER_MIN": "0",  # one sender writes the whole corpus: no flood or loop limit here
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


async def deliver(port: int, raw: bytes, envelope_from: str) -> tuple[str, str]:
    """("stored" | "refused" | "deferred", the listener's answer) for one mail sent over SMTP."""
    try:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30) as client:
            _, answer = await client.sendmail(envelope_from, ["contact@mutuelle.example"], raw)
        return "stored", answer
    except aiosmtplib.SMTPResponseException as exc:
        return ("refused" if exc.code >= 500 else "deferred"), f"{exc.code} {exc.message}"


async def test_hostile_mails_are_stored_sanitised_or_refused_clearly(
    gateway: Gateway, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    channel = gateway.channels["email"]
    assert isinstance(channel, EmailChannel)
    cases = corpus(MAX_BYTES)
    report: list[str] = []
    problems: list[str] = []
    outcomes: dict[str, str] = {}
    for case in cases:
        started = time.monotonic()
        outcome, answer = await asyncio.wait_for(deliver(channel.port, case.raw, case.envelope_from), 60)
        took = time.monotonic() - started
        outcomes[case.label] = outcome
        report.append(f"{case.label:38} {len(case.raw):>9} B {took:6.2f} s  {outcome:8} {answer[:90]}")
        if case.expect != "either" and outcome != case.expect:
            problems.append(f"{case.label}: {outcome} ({answer}), expected {case.expect}")
        if outcome == "refused" and not re.match(r"5\d\d [\w .,:()/'-]{8,}", answer, re.UNICODE):
            problems.append(f"{case.label}: refusal without a clear reason: {answer!r}")
        if took > PER_MAIL_S:
            problems.append(f"{case.label}: took {took:.1f} s")
    # The listener still answers an ordinary mail at once.
    started = time.monotonic()
    plain = b"From: a@example.fr\r\nMessage-ID: <after@example.fr>\r\nSubject: Bonjour\r\n\r\nToujours la ?\r\n"
    assert await deliver(channel.port, plain, "a@example.fr") == ("stored", "2.0.0 OK")
    assert time.monotonic() - started < 2.0
    print("\n" + "\n".join(report))

    # What was stored: sanitised text, one-line subject, safe attachment names.
    stored = [Message.from_json(f["m"]) for _, f in await redis.xrange(keys.stream("in", 0))]
    if len(stored) != sum(1 for o in outcomes.values() if o == "stored") + 1:
        problems.append(f"{len(stored)} mails stored, {list(outcomes.values()).count('stored') + 1} accepted")
    for msg in stored:
        label = msg.external_id or msg.id
        if UNSAFE.search(msg.text) or len(msg.text) > MAX_TEXT or "<script" in msg.text.lower():
            problems.append(f"{label}: unsafe text stored {msg.text[:60]!r}")
        subject = str(msg.meta.get("subject", ""))
        if UNSAFE.search(subject) or "\n" in subject or len(subject) > 300:
            problems.append(f"{label}: unsafe subject {subject[:60]!r}")
        for att in msg.attachments:
            name = att.filename or ""
            if UNSAFE.search(name) or "/" in name or "\\" in name or name.startswith(".") or len(name) > 200:
                problems.append(f"{label}: unsafe attachment name {name[:60]!r}")
    # Every stored mail is handled by the router, and the non-automated ones are answered.
    answerable = sum(1 for m in stored if not m.automated)
    outbox = gateway.settings.var_dir / "outbox"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(outbox.glob("*.eml"))) < answerable:
        await asyncio.sleep(0.1)
    if len(list(outbox.glob("*.eml"))) != answerable:
        problems.append(f"{len(list(outbox.glob('*.eml')))} answers for {answerable} mails to answer")
    for path in outbox.glob("*.eml"):  # our answers: no header smuggled in from a hostile subject
        answer = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if answer["Bcc"] is not None or answer["To"] is None or "\n" in str(answer["Subject"]):
            problems.append(f"{path.name}: answer headers damaged")
    by_id = {m.external_id: m for m in stored}
    scripted = by_id["html-only-scripts@example.fr"].text
    assert "Bonjour" in scripted and "alert" not in scripted and "cookie" not in scripted
    assert by_id["encoded-word-header-injection@example.fr"].meta["subject"] == "Bonjour Bcc: victime@example.fr"
    names = [a.filename for a in by_id["attachment-path-traversal@example.fr"].attachments]
    assert names == ["passwd", "x.dll"]
    for kind in ("in", "out"):
        assert await redis.xlen(keys.dead(kind, 0)) == 0
    tracebacks = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    problems += [f"logged: {r.name} {r.getMessage()[:200]}" for r in tracebacks]
    if "Traceback" in caplog.text:
        problems.append("a traceback was logged")
    assert not problems, "\n".join([*problems, "", *report])
