"""WhatsApp end to end against ``run.py serve`` (one product start, the real Rasa and action
servers): a member writes on WhatsApp (the first message posted to the SMS webhook, as Twilio does
when one number serves both), is verified by birth date and gets a status answer; then a campaign
notice goes by the approved template to a member whose 24-hour window is closed, while the notice
to a member whose window Twilio found closed fails with 63016 and falls back to SMS."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from campaigns.rules import PARIS, fr_date, is_public_holiday
from gateway import keys
from members.records import Member, MemberStore
from tests.e2e.bot_data import CAMILLE, day, seed
from tests.e2e.conftest import AUTH_TOKEN, OUR_NUMBER
from tests.e2e.product import ROOT, Product
from tests.e2e.test_bot_e2e import turn
from tests.fakes.twilio import FakeTwilio, signed_inbound

TEMPLATE = "HX" + "5e" * 16
TEMPLATE_TEXT = "Information de votre mutuelle : {{1}} Répondez à ce message pour nous écrire."
# A member who never wrote on WhatsApp: her window is closed, her notice goes by the template.
NINA = Member(
    number="M0000044", first_name="Nina", last_name="Lefèvre", birth_date="1988-11-30", phone="+33199005678",
    email="", cover_level="confort", region="Bretagne", segment="famille", contribution_eur="64.20",
    contribution_call_date=day(40),
)  # fmt: skip


@pytest.fixture
async def wa_product(
    make_product: Callable[..., Product], rasa_url: str, actions_url: str, redis: Redis, redis_url: str
) -> AsyncIterator[Product]:
    await seed(redis)
    product = make_product(
        RESPONDER="rasa", RASA_URL=rasa_url, ACTIONS_URL=actions_url, REDIS_URL=redis_url,
        TWILIO_WHATSAPP_FROM=OUR_NUMBER, TWILIO_WHATSAPP_NOTICE_CONTENT_SID=TEMPLATE,
    )  # fmt: skip
    await product.start()
    yield product
    assert product.stop() == 0


async def until(ready: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout}s for {what}")
        await asyncio.sleep(0.05)


@pytest.mark.timeout(420)  # a bot conversation, then a campaign through run.py campaign
async def test_member_on_whatsapp_then_a_notice_by_template_and_a_63016_fallback_to_sms(
    wa_product: Product, fake_twilio: FakeTwilio, redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    product = wa_product
    member = "whatsapp:" + CAMILLE.phone
    fake_twilio.approve_template(TEMPLATE, TEMPLATE_TEXT)

    def inbox() -> list[str]:
        return [m.body for m in fake_twilio.messages if m.to == member]

    async with aiohttp.ClientSession() as session:
        path = "/sms/twilio/inbound"  # the first message reaches the SMS webhook: handed over

        async def send(text: str) -> None:
            params = fake_twilio.whatsapp_inbound(CAMILLE.phone, text, to=OUR_NUMBER, profile_name="Camille")
            headers, body = signed_inbound(product.url, path, AUTH_TOKEN, params)
            async with session.post(product.url + path, data=body, headers=headers) as resp:
                assert resp.status == 200, await resp.text()

        [hello] = await turn(send, inbox, "bjr", "Bonjour")
        assert hello.startswith("Bonjour ! Je suis l'assistant")
        path = "/whatsapp/twilio/inbound"
        asked = await turn(send, inbox, "ou en est mon rembourssement stp", "date de naissance")
        assert asked[0] == "Pour vous répondre, je dois d'abord vérifier votre identité."
        listing = await turn(send, inbox, "12/03/1975", "Lequel vous intéresse")  # the long form: not an SMS
        assert "1. lunettes du " in listing[-1] and "2. pharmacie du " in listing[-1]
        [answer] = await turn(send, inbox, "2", "pharmacie")
        assert "est payé : 18,80 €, versé le " + fr_date(dt.date.fromisoformat(day(-8))) in answer  # long form
    replies = [m for m in fake_twilio.messages if m.to == member]
    assert all(m.from_ == "whatsapp:" + OUR_NUMBER and m.content_sid is None for m in replies)  # free text
    audit = await redis.xrange(keys.member_audit(CAMILLE.number))
    assert [e["what"] for _, e in audit] == ["claims_list", "claim"]
    assert {e["channel"] for _, e in audit} == {"whatsapp"}
    # The replies' read receipts come back through the status webhook.
    await fake_twilio.deliver_callbacks(url=product.url + "/whatsapp/twilio/status", sid=replies[-1].sid,
                                        statuses=("sent", "delivered", "read"))  # fmt: skip
    conv = await redis.get(keys.open_conversation(await redis.get(keys.address(member)), "whatsapp"))
    assert (
        conv
        and await redis.hget(
            keys.message(conv, _id_of(await redis.get(keys.provider_ref("whatsapp", replies[-1].sid)))), "status"
        )
        == "read"
    )

    today = dt.datetime.now(PARIS).date()
    if today.isoweekday() == 7 or is_public_holiday(today):
        pytest.skip("campaign part: notices are never sent on a Sunday or a public holiday in Paris")

    # A campaign: WhatsApp first, then SMS. Camille's window is open here; at WhatsApp it has just closed.
    store = MemberStore(redis)
    async with redis.pipeline(transaction=False) as pipe:
        store.write(pipe, NINA)
        await pipe.execute()
    fake_twilio.expire_window(CAMILLE.phone)
    effective = (today + dt.timedelta(days=70)).replace(day=1)
    spec = {
        "kind": "contribution_change",
        "title": "Évolution de votre cotisation",
        "effective_date": effective.isoformat(),
        "channels": ["whatsapp", "sms"],
        "values": {"new_contribution": "67.10", "change_percent": "4.5"},
        "audience": {"members": [CAMILLE.number, NINA.number]},
        "window": {"start": "00:00", "end": "23:59", "weekdays": [1, 2, 3, 4, 5, 6]},
    }
    spec_path = tmp_path / "campagne.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    cid = campaign_cli(product, "create", str(spec_path)).strip()
    assert "Programmée : 2 adhérents" in campaign_cli(product, "schedule", cid)

    nina = "whatsapp:" + NINA.phone
    await until(lambda: {m.to for m in fake_twilio.messages} >= {nina} and len(fake_twilio.messages) > len(replies) + 1,
                "both WhatsApp notices")  # fmt: skip
    [template] = [m for m in fake_twilio.messages if m.to == nina]
    assert template.content_sid == TEMPLATE and "Body" not in template.params
    assert template.body.startswith("Information de votre mutuelle : Évolution de votre cotisation : à partir du ")
    assert "67,10" in template.content_variables["1"]
    [free_text] = [m for m in fake_twilio.messages if m.to == member and m not in replies]
    assert free_text.content_sid is None and "67,10" in free_text.body
    status_url = product.url + "/whatsapp/twilio/status"
    await fake_twilio.deliver_callbacks(url=status_url, sid=template.sid, statuses=("sent", "delivered", "read"))
    assert await fake_twilio.deliver_callbacks(url=status_url, sid=free_text.sid) == [200, 200]  # queued, failed 63016

    await until(lambda: any(m.to == CAMILLE.phone for m in fake_twilio.messages), "the SMS fallback")
    [sms] = [m for m in fake_twilio.messages if m.to == CAMILLE.phone]
    assert sms.from_ == OUR_NUMBER and "67,10" in sms.body
    rows = csv.DictReader(io.StringIO(campaign_cli(product, "proof", cid)), delimiter=";")  # French Excel's CSV
    proof = {row["Numéro d'adhérent"]: row for row in rows}
    assert (proof[CAMILLE.number]["Canal"], proof[CAMILLE.number]["Canaux essayés avant"]) == ("SMS", "WhatsApp")
    assert (proof[NINA.number]["Canal"], proof[NINA.number]["Statut"]) == ("WhatsApp", "lue")
    assert not await redis.exists(keys.whatsapp_window(member))  # Twilio said it closed: templates from now
    await asyncio.sleep(1.0)  # nothing more may arrive: one notice per member and channel
    assert [m.to for m in fake_twilio.messages].count(nina) == 1
    assert [m.to for m in fake_twilio.messages].count(CAMILLE.phone) == 1


def _id_of(ref: str | None) -> str:
    assert ref, "the reply's Twilio SID is not known"
    return ref.partition(" ")[2]


def campaign_cli(product: Product, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "campaign", *args],
        env=product.env, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout
