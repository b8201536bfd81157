"""Sending on WhatsApp through the twilio library to the loopback fake: free text inside the
member's 24-hour window, the notice template outside it, Twilio's 63016 as its own failure."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from channels.sms import create as create_sms
from channels.whatsapp import OutsideWindow, create
from channels.whatsapp.inbound import open_window, window_open
from gateway.contacts import Contacts, register_member
from gateway.envelope import Message, PermanentFailure, now_ms
from gateway.settings import Settings, SettingsError
from tests.channels.sms.sms_harness import ACCOUNT_SID, AUTH_TOKEN, context
from tests.channels.whatsapp.conftest import NOTICE_TEMPLATE, WHATSAPP_FROM, WaFactory, WaHarness
from tests.fakes.twilio import FakeTwilio

REPLY_TEMPLATE = "HX" + "cd" * 16

MEMBER = "+33639980012"
URN = f"whatsapp:{MEMBER}"
NOTICE = "Évolution de la cotisation : à partir du 1er mars,\nvotre cotisation passe à 48,20 €."


def outbound(text: str = "Votre remboursement de 42,50 € a été effectué.", **meta: Any) -> Message:
    return Message(id="m1", channel="whatsapp", urn=URN, direction="out", text=text, meta=meta, conversation_id="c1")


async def test_inside_the_window_the_text_goes_as_it_is(wa: WaHarness) -> None:
    wa.fake.whatsapp_inbound(MEMBER, "Bonjour")
    await open_window(wa.redis, URN)
    assert wa.whatsapp is not None
    result = await wa.whatsapp.send(outbound(thread={"twilio_from": "+33700000099"}))
    [sent] = await wa.fake.wait_for(1)
    assert sent.to == URN and sent.body == "Votre remboursement de 42,50 € a été effectué."
    assert sent.from_ == "whatsapp:+33700000099"  # the number the member wrote to
    assert sent.content_sid is None and "ContentSid" not in sent.params
    assert sent.status_callback == "https://passerelle.mutuelle.example/whatsapp/twilio/status?ref=c1+m1"
    assert result.external_id == sent.sid and "template" not in result.meta


async def test_outside_the_window_a_notice_goes_by_its_template(wa: WaHarness) -> None:
    wa.fake.approve_template(NOTICE_TEMPLATE, "Votre mutuelle vous informe : {{1}} Répondez pour nous écrire.")
    assert wa.whatsapp is not None
    result = await wa.whatsapp.send(outbound(NOTICE, campaign="k1", member="100001"))
    [sent] = await wa.fake.wait_for(1)
    assert sent.content_sid == NOTICE_TEMPLATE and "Body" not in sent.params
    # One line: WhatsApp refuses template variables with line breaks.
    assert sent.content_variables == {
        "1": "Évolution de la cotisation : à partir du 1er mars, votre cotisation passe à 48,20 €."
    }
    assert sent.body.startswith("Votre mutuelle vous informe : Évolution de la cotisation")
    assert sent.from_ == "whatsapp:+33700000000"
    assert result.meta["template"] == NOTICE_TEMPLATE
    codes = await wa.fake.deliver_callbacks(url=str(wa.client.make_url("/whatsapp/twilio/status")))
    assert codes == [200, 200, 200]
    assert [u.status for u in await wa.statuses()] == ["queued", "sent", "delivered"]


async def test_outside_the_window_a_reply_fails_for_good_without_calling_twilio(wa: WaHarness) -> None:
    assert wa.whatsapp is not None
    with pytest.raises(OutsideWindow) as caught:
        await wa.whatsapp.send(outbound())
    assert caught.value.code == "63016" and "24 h" in caught.value.reason
    assert not caught.value.retryable
    assert wa.fake.requests == []


async def test_a_window_that_closed_at_whatsapp_fails_by_the_callback_and_closes_ours(wa: WaHarness) -> None:
    await open_window(wa.redis, URN)  # we think it is open; WhatsApp counted 24 h already
    assert wa.whatsapp is not None
    await wa.whatsapp.send(outbound(NOTICE, campaign="k1"))
    [sent] = await wa.fake.wait_for(1)
    assert sent.content_sid is None  # free text: our window said open
    codes = await wa.fake.deliver_callbacks(url=str(wa.client.make_url("/whatsapp/twilio/status")))
    assert codes == [200, 200]
    failed = (await wa.statuses())[-1]
    assert (failed.status, failed.error_code, failed.ref) == ("failed", "63016", "c1 m1")
    assert not await window_open(wa.redis, URN)  # the next notice goes by the template


async def test_63016_in_the_api_answer_is_a_permanent_failure_of_its_own(wa: WaHarness) -> None:
    await open_window(wa.redis, URN)
    wa.fake.inject(status=400, code=63016)
    assert wa.whatsapp is not None
    with pytest.raises(PermanentFailure) as caught:
        await wa.whatsapp.send(outbound())
    assert caught.value.code == "63016" and "fenêtre de 24 h" in caught.value.reason


async def test_the_window_runs_24_hours_from_the_last_message(redis: Redis) -> None:
    await open_window(redis, URN, now_ms() - 23 * 3600 * 1000)
    assert await window_open(redis, URN)
    await open_window(redis, URN, now_ms() - (24 * 3600 - 300) * 1000)  # 5 minutes left: too close
    assert not await window_open(redis, URN)


async def test_rate_limits_the_sender_and_each_member(wa: WaHarness) -> None:
    assert wa.whatsapp is not None
    limits = wa.whatsapp.rate_limits(outbound())
    assert [(lim.bucket, lim.per_second) for lim in limits] == [("whatsapp", 80.0), (f"whatsapp:{URN}", 10 / 60)]


async def test_disabled_until_its_sender_is_set(make_wa: WaFactory, settings_env: dict[str, str]) -> None:
    assert not Settings.from_env({**settings_env, "TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t",
                                  "TWILIO_FROM": "+33700000000"}).whatsapp_enabled  # fmt: skip
    with pytest.raises(SettingsError, match="TWILIO_WHATSAPP_FROM"):
        Settings.from_env({**settings_env, "TWILIO_WHATSAPP_FROM": "+33700000000"})
    with pytest.raises(SettingsError, match=r"E\.164"):
        await make_wa(TWILIO_WHATSAPP_FROM="07 00 00 00 00")
    harness = await make_wa(TWILIO_WHATSAPP_FROM="whatsapp:+33700000001")
    assert harness.settings.twilio_whatsapp_from == "+33700000001"


async def test_a_whatsapp_address_links_to_the_member_with_that_phone(redis: Redis) -> None:
    await register_member(redis, "100001", phone=MEMBER, email=None)
    contacts = Contacts(redis)
    contact = await contacts.resolve(URN, "whatsapp")
    assert (await contacts.get(contact))["member_id"] == "100001"
    stranger = await contacts.resolve("whatsapp:+33639980099", "whatsapp")
    assert "member_id" not in await contacts.get(stranger)


async def test_whatsapp_works_without_any_sms_setting(
    redis: Redis, settings_env: dict[str, str], fake_twilio: FakeTwilio
) -> None:
    """A mutuelle on WhatsApp only: the Twilio account and the WhatsApp sender, no SMS sender."""
    env = {**settings_env, "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
           "TWILIO_API_BASE": fake_twilio.base_url, "TWILIO_WHATSAPP_FROM": WHATSAPP_FROM}  # fmt: skip
    settings = Settings.from_env(env)
    assert settings.whatsapp_enabled and not settings.sms_enabled
    ctx = context(settings, redis)
    assert create_sms(ctx) is None  # no SMS sender: no SMS channel (and no SMS webhook)
    whatsapp = create(ctx)
    assert whatsapp is not None
    await open_window(redis, URN)
    await whatsapp.send(outbound())
    [sent] = await fake_twilio.wait_for(1)
    assert sent.to == URN and sent.from_ == f"whatsapp:{WHATSAPP_FROM}"
    await whatsapp.stop()
    # The account alone says nothing to send with: refused, naming both ways.
    account_only = {**settings_env, "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN}
    with pytest.raises(SettingsError, match=r"TWILIO_FROM.*TWILIO_WHATSAPP_FROM"):
        Settings.from_env(account_only)


async def test_outside_the_window_an_agents_reply_goes_by_the_reprise_de_contact_template(
    make_wa: WaFactory,
) -> None:
    wa = await make_wa(TWILIO_WHATSAPP_REPLY_CONTENT_SID=REPLY_TEMPLATE)
    wa.fake.approve_template(REPLY_TEMPLATE, "Votre mutuelle revient vers vous : {{1}}")
    assert wa.whatsapp is not None
    reply = "Bonjour, votre devis\ndentaire est accepté."
    result = await wa.whatsapp.send(outbound(reply, agent="julie", speaker="Julie, conseillère"))
    [sent] = await wa.fake.wait_for(1)
    # One line (WhatsApp refuses line breaks in a variable), sent as the template's variable, no Body.
    assert sent.content_sid == REPLY_TEMPLATE and "Body" not in sent.params
    assert sent.content_variables == {"1": "Bonjour, votre devis dentaire est accepté."}
    assert sent.body == "Votre mutuelle revient vers vous : Bonjour, votre devis dentaire est accepté."
    assert result.meta["template"] == REPLY_TEMPLATE


async def test_outside_the_window_without_the_template_an_agents_reply_is_refused_saying_why(wa: WaHarness) -> None:
    assert wa.whatsapp is not None
    with pytest.raises(OutsideWindow) as caught:
        await wa.whatsapp.send(outbound("Bonjour, je reviens vers vous.", agent="julie"))
    assert "plus de 24 h" in caught.value.reason and "autre canal" in caught.value.reason
    assert wa.fake.requests == []
