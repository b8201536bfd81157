"""Inbound webhook behaviour beyond single payloads: redelivery, keyword ordering, limits, logs."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET

import pytest
from redis.asyncio import Redis

from channels.base import RateLimit
from channels.sms import create
from channels.sms.keywords import OPT_OUT_REPLY
from gateway.envelope import Message
from gateway.settings import Settings
from tests.channels.sms.sms_harness import Harness, HarnessFactory, context
from tests.fakes.twilio import inbound_params

MEMBER = "+33639980012"
URN = f"tel:{MEMBER}"
INBOUND = "/sms/twilio/inbound"


async def test_redelivery_is_answered_200_and_stored_once(sms: Harness) -> None:
    params = inbound_params(MEMBER, "Où en est mon dossier ?")
    first = await sms.post(INBOUND, params)
    again = await sms.post(INBOUND, params)
    assert first[0] == again[0] == 200
    assert [m.external_id for m in await sms.accepted()] == [params["MessageSid"]]


async def test_redelivered_french_stop_is_confirmed_again(sms: Harness) -> None:
    """Twilio redelivers when it did not get our answer: the confirmation must be in it."""
    params = inbound_params(MEMBER, "ARRÊT")
    for _ in range(2):
        status, body, _ = await sms.post(INBOUND, params)
        assert status == 200
        assert ET.fromstring(body).findtext("Message") == OPT_OUT_REPLY
    assert await sms.opted_out(URN)
    assert len(await sms.accepted()) == 1


async def test_stale_start_redelivered_after_stop_keeps_the_opt_out(sms: Harness) -> None:
    start = inbound_params(MEMBER, "START")
    stop = inbound_params(MEMBER, "STOP")
    assert (await sms.post(INBOUND, start))[0] == 200
    assert not await sms.opted_out(URN)
    assert (await sms.post(INBOUND, stop))[0] == 200
    assert await sms.opted_out(URN)
    # Twilio retries the old START: it is a duplicate, and must not opt the member back in.
    assert (await sms.post(INBOUND, start))[0] == 200
    assert await sms.opted_out(URN)
    assert [m.kind for m in await sms.accepted()] == ["optin", "optout"]


async def test_stop_then_demarrer_then_arret(sms: Harness) -> None:
    for body, opted_out in (("STOP", True), ("Démarrer", False), ("Arrêt.", True), ("unstop", False)):
        assert (await sms.post(INBOUND, inbound_params(MEMBER, body)))[0] == 200
        assert await sms.opted_out(URN) is opted_out, body
    assert [m.kind for m in await sms.accepted()] == ["optout", "optin", "optout", "optin"]


async def test_opt_out_of_one_member_leaves_others(sms: Harness) -> None:
    await sms.post(INBOUND, inbound_params(MEMBER, "STOP"))
    await sms.post(INBOUND, inbound_params("+33639980047", "Bonjour"))
    assert await sms.opted_out(URN)
    assert not await sms.opted_out("tel:+33639980047")


async def test_body_over_the_size_limit_is_413(make_sms: HarnessFactory) -> None:
    sms = await make_sms(MAX_BODY_BYTES="2048")
    status, _, _ = await sms.post(INBOUND, inbound_params(MEMBER, "x" * 4000))
    assert status == 413
    assert await sms.accepted() == []


async def test_logs_hold_no_text_nor_phone_number(sms: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await sms.post(INBOUND, inbound_params(MEMBER, "Mon remboursement de lunettes"))
    await sms.post(INBOUND, inbound_params(MEMBER, "ARRET"))
    forged = inbound_params(MEMBER, "Mon remboursement")
    await sms.post(INBOUND, forged, token="wrong")
    assert caplog.records, "the channel logs what it does"
    for record in caplog.records:
        dumped = f"{record.getMessage()} {record.__dict__}"
        assert "remboursement" not in dumped
        assert "39980012" not in dumped


async def test_rate_limit_is_one_global_bucket(sms: Harness, make_sms: HarnessFactory) -> None:
    out = Message(id="o1", channel="sms", urn=URN, direction="out", text="Bonjour")
    assert sms.channel.rate_limits(out) == [RateLimit("sms", 10.0)]
    slower = await make_sms(SMS_RATE_PER_S="2.5")
    assert slower.channel.rate_limits(out) == [RateLimit("sms", 2.5)]


async def test_disabled_without_credentials(settings: Settings, redis: Redis) -> None:
    assert not settings.sms_enabled
    assert create(context(settings, redis)) is None
