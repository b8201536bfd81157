"""E-mail parse table and the SMTP listener against a real Redis."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from redis.asyncio import Redis

from channels.email import EmailChannel, parse_email
from gateway import keys
from gateway.app import Gateway
from gateway.envelope import Message
from gateway.settings import Settings
from tests.fakes.smtp import SmtpSink

CASES = json.loads((Path(__file__).parent / "cases.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["label"] for c in CASES])
def test_parse(case: dict[str, Any]) -> None:
    msg = parse_email(case["raw"].encode("utf-8"), case.get("envelope_from"), case.get("own_domain"))
    want = case["expected"]
    checks = {
        "urn": lambda: msg.urn,
        "external_id": lambda: msg.external_id,
        "text": lambda: msg.text,
        "automated": lambda: msg.automated,
        "automated_reason": lambda: msg.meta.get("automated_reason"),
        "subject": lambda: msg.meta["subject"],
        "reply_subject": lambda: msg.meta["reply"]["subject"],
        "thread_refs": lambda: sorted(msg.meta["thread_refs"]),
        "attachments": lambda: [[a.filename, a.content_type] for a in msg.attachments],
    }
    for field, value in want.items():
        if field == "text_contains":
            for part in value:
                assert part in msg.text
        elif field == "text_excludes":
            for part in value:
                assert part not in msg.text
        elif field == "external_id_prefix":
            assert (msg.external_id or "").startswith(value)
        elif field == "thread_refs":
            assert checks[field]() == sorted(value)
        else:
            assert checks[field]() == value, field
    if "automated" not in want:
        assert msg.automated is False


@pytest.fixture
async def gateway(redis: Redis, settings_env: dict[str, str]) -> AsyncIterator[Gateway]:
    settings = Settings.from_env({**settings_env, "SMTP_LISTEN_PORT": "0", "MAX_EMAIL_BYTES": "20000"})
    gw = Gateway(settings, redis, roles=frozenset({"web"}), channel_names=["email"])
    await gw.start_channels()
    yield gw
    await gw.stop_channels()


def mail(message_id: str, body: str = "Bonjour") -> EmailMessage:
    m = EmailMessage()
    m["From"] = "adherent@example.fr"
    m["To"] = "contact@mutuelle.example"
    m["Subject"] = "Test"
    m["Message-ID"] = f"<{message_id}>"
    m.set_content(body)
    return m


async def test_listener_accepts_once_and_refuses_oversized(gateway: Gateway, redis: Redis) -> None:
    channel = gateway.channels["email"]
    assert isinstance(channel, EmailChannel)
    for _ in range(2):
        await aiosmtplib.send(mail("dup@example.fr"), hostname="127.0.0.1", port=channel.port)
    assert await redis.xlen(keys.stream("in", 0)) == 1
    with pytest.raises(aiosmtplib.SMTPResponseException) as exc:
        await aiosmtplib.send(mail("big@example.fr", "x" * 50_000), hostname="127.0.0.1", port=channel.port)
    assert exc.value.code == 552
    [(_, fields)] = await redis.xrange(keys.stream("in", 0))
    assert Message.from_json(fields["m"]).urn == "mailto:adherent@example.fr"


async def test_send_threads_and_relay_faults(redis: Redis, settings_env: dict[str, str]) -> None:
    async with SmtpSink() as sink:
        settings = Settings.from_env({**settings_env, "SMTP_URL": sink.url})
        gw = Gateway(settings, redis, roles=frozenset({"worker"}), channel_names=["email"])
        channel = gw.channels["email"]
        out = Message(
            id="r-1",
            channel="email",
            urn="mailto:adherent@example.fr",
            direction="out",
            text="Votre dossier est en cours.",
            conversation_id="conv-9",
            meta={
                "thread": {
                    "subject": "Re: Dossier",
                    "in_reply_to": "m1@example.fr",
                    "references": ["m0@x", "m1@example.fr"],
                }
            },
        )
        result = await channel.send(out)
        [got] = await sink.wait_for(1)
        assert got.message["Message-ID"] == "<r-1@mutuelle.example>" == f"<{result.external_id}>"
        assert got.message["In-Reply-To"] == "<m1@example.fr>"
        assert got.message["References"] == "<m0@x> <m1@example.fr>"
        assert await redis.get(keys.email_thread("r-1@mutuelle.example")) == "conv-9"
        from gateway.envelope import PermanentFailure, ProviderUnavailable

        sink.inject(451)
        with pytest.raises(ProviderUnavailable):
            await channel.send(out)
        sink.inject(550)
        with pytest.raises(PermanentFailure):
            await channel.send(out)
        # Connections are kept open and reused: a campaign does not reconnect for every notice.
        for i in range(5):
            await channel.send(Message(id=f"n-{i}", channel="email", urn=f"mailto:n{i}@example.fr",
                                       direction="out", text="Notice", meta={"campaign": "c1"}))  # fmt: skip
        await sink.wait_for(6)
        assert sink.connections == 1
        await channel.stop()


async def test_without_relay_replies_go_to_the_file_outbox(redis: Redis, settings: Settings) -> None:
    gw = Gateway(settings, redis, roles=frozenset({"worker"}), channel_names=["email"])
    out = Message(id="r-2", channel="email", urn="mailto:a@example.fr", direction="out", text="Bonjour")
    result = await gw.channels["email"].send(out)
    assert result.meta["via"] == "outbox"
    eml = (settings.var_dir / "outbox" / "r-2.eml").read_bytes()
    assert b"Message-ID: <r-2@mutuelle.example>" in eml and b"text/html" in eml
