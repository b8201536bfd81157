"""A forged member address (issue 19), against ``run.py serve`` with the real bot and EMAIL_AUTHSERV_ID.

Someone writes with Camille's registered address in ``From:``; the mutuelle's MX found DMARC failing
and said so in its Authentication-Results. The forger asks about Camille's complaint, gives her right
birth date, and writes again once Camille herself is verified. The forger gets nothing (no mail to
anyone for the forged ones), nothing of Camille's is disclosed to the forged conversation, the forged
mails are kept for the agents; Camille, whose mail passes DMARC, is answered as usual (the control
that the bot answers e-mail at all with the setting on)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage

import aiohttp
import aiosmtplib
import pytest
from redis.asyncio import Redis

from gateway import keys
from gateway.contacts import UNPROVEN
from gateway.envelope import Message
from tests.e2e.bot_data import CAMILLE, seed
from tests.e2e.product import Product
from tests.e2e.test_bot_e2e import turn
from tests.fakes.smtp import SmtpSink

MX = "mx.mutuelle.example"
PASS = f"{MX}; spf=pass smtp.mailfrom=example.fr; dkim=pass header.d=example.fr; dmarc=pass header.from=example.fr"
FAIL = f"{MX}; spf=fail smtp.mailfrom=forger.example; dkim=none; dmarc=fail (p=none) header.from=example.fr"
URN = f"mailto:{CAMILLE.email}"


@pytest.fixture
async def product(
    make_product: Callable[..., Product], rasa_url: str, actions_url: str, redis: Redis, redis_url: str
) -> AsyncIterator[Product]:
    await seed(redis)
    product = make_product(
        RESPONDER="rasa", RASA_URL=rasa_url, ACTIONS_URL=actions_url, REDIS_URL=redis_url, EMAIL_AUTHSERV_ID=MX
    )
    await product.start()
    async with aiohttp.ClientSession() as http, http.get(f"{product.url}/readyz") as resp:
        assert resp.status == 200, await resp.text()
    yield product
    assert product.stop() == 0


async def test_forged_member_address_with_the_right_birth_date_gets_nothing(
    product: Product, smtp_sink: SmtpSink, redis: Redis
) -> None:
    ids = itertools.count(1)
    sent: dict[str, list[str]] = {"forged": [], "authentic": []}

    async def write(kind: str, text: str) -> None:
        mail = EmailMessage()
        mail["Authentication-Results"] = FAIL if kind == "forged" else PASS
        mail["From"] = f"Camille Durand <{CAMILLE.email}>"
        mail["To"] = "contact@mutuelle.example"
        mail["Subject"] = "Ma réclamation"
        mail["Message-ID"] = f"<{kind}{next(ids)}@example.fr>"
        mail.set_content(text)
        sent[kind].append(str(mail["Message-ID"]))
        envelope = "bulk@forger.example" if kind == "forged" else CAMILLE.email
        await aiosmtplib.send(mail, sender=envelope, recipients=["contact@mutuelle.example"],
                              hostname="127.0.0.1", port=product.smtp_port)  # fmt: skip

    def inbox() -> list[str]:
        out = []
        for got in smtp_sink.received:
            body = got.message.get_body(preferencelist=("plain",))
            out.append(body.get_content() if body is not None else "")
        return out

    async def forged(text: str) -> None:
        await write("forged", text)

    async def authentic(text: str) -> None:
        await write("authentic", text)

    await forged("Bonjour, où en est ma réclamation ?")
    await forged("Je suis née le 12/03/1975")
    await forged("Où en est ma réclamation ? Je suis née le 12/03/1975.")
    # Camille herself, DMARC passing: asked her birth date, then told about her complaint.
    await turn(authentic, inbox, "Bonjour, où en est ma réclamation ?", "date de naissance", timeout=60)
    await turn(authentic, inbox, "Je suis née le 12/03/1975", "REC-2026-000042", timeout=60)
    # The forger again, while Camille's conversation is verified.
    await forged("Et ma carte de tiers payant ?")

    # The forged mails are all stored and handled (for the agents), under a contact of their own.
    contact = await redis.get(keys.address(UNPROVEN + URN))
    assert contact and await redis.hget(keys.contact(contact), "member_id") is None
    conv = await redis.get(keys.open_conversation(contact, "email"))
    deadline = time.monotonic() + 30
    handled: list[Message] = []
    ids_: list[str] = []
    while time.monotonic() < deadline:
        ids_ = await redis.zrange(keys.conversation_log(conv), 0, -1) if conv else []
        handled = [Message.from_json(await redis.hget(keys.message(conv, i), "m")) for i in ids_
                   if await redis.exists(keys.handled(conv, i))]  # fmt: skip
        if len(handled) == 4:
            break
        await asyncio.sleep(0.1)
        conv = conv or await redis.get(keys.open_conversation(contact, "email"))
    assert sorted(f"<{m.meta['message_id']}>" for m in handled) == sorted(sent["forged"])
    assert len(ids_) == 4  # no answer stored in the forged conversation either
    assert all(m.sender_authentic is False and m.automated and m.direction == "in" for m in handled)
    assert any("12/03/1975" in m.text for m in handled)  # kept whole for the agents

    # Nothing sent for a forged mail: every mail that left answers one of Camille's authentic ones.
    for got in smtp_sink.received:
        assert got.rcpt_tos == [CAMILLE.email]
        assert str(got.message["In-Reply-To"]) in sent["authentic"], got.message["In-Reply-To"]
    # Nothing disclosed to the forged conversation: every audit entry is Camille's authentic one.
    proven_conv = await redis.get(keys.open_conversation(await redis.get(keys.address(URN)), "email"))
    entries = [e for _, e in await redis.xrange(keys.member_audit(CAMILLE.number))]
    assert entries and {e["conversation"] for e in entries} == {proven_conv}
