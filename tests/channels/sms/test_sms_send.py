"""Sending through the twilio library to the loopback fake of Twilio's Messages API."""

from __future__ import annotations

import asyncio
import time
from email.utils import formatdate
from typing import Any

import pytest

from channels.sms.sender import parse_retry_after
from gateway.envelope import (
    AmbiguousSend,
    ContactOptedOut,
    Message,
    PermanentFailure,
    ProviderUnavailable,
    SendError,
    Throttled,
)
from tests.channels.sms.sms_harness import ACCOUNT_SID, OUR_NUMBER, PUBLIC_URL, Harness, HarnessFactory

MEMBER = "+33639980012"


def outbound(text: str = "Votre remboursement de 42,50 EUR a été effectué.", **meta: Any) -> Message:
    return Message(id="m1", channel="sms", urn=f"tel:{MEMBER}", direction="out", text=text, meta=meta)


async def test_send_reaches_twilio_api_with_everything_it_needs(sms: Harness) -> None:
    result = await sms.channel.send(outbound())
    [sent] = await sms.fake.wait_for(1)
    assert (sent.to, sent.from_, sent.messaging_service_sid) == (MEMBER, OUR_NUMBER, None)
    assert sent.body == "Votre remboursement de 42,50 EUR a été effectué."
    assert sent.status_callback == PUBLIC_URL + "/sms/twilio/status"
    [request] = sms.fake.requests
    assert request.authorized and request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert result.external_id == sent.sid and sent.sid.startswith("SM") and len(sent.sid) == 34
    assert result.status == "sent"
    assert result.meta == {"encoding": "GSM-7", "segments": 1, "provider_status": "queued"}


async def test_send_reports_ucs2_and_segments(sms: Harness) -> None:
    text = "Votre cotisation évolue au 1er janvier : ça change peu 😊 " * 3
    result = await sms.channel.send(outbound(text))
    assert result.meta["encoding"] == "UCS-2"
    assert result.meta["segments"] == 3  # 174 UTF-16 code units, 67 per segment
    [sent] = await sms.fake.wait_for(1)
    assert sent.body == text


async def test_send_through_a_messaging_service(make_sms: HarnessFactory) -> None:
    service = "MG4c5d6e7f8091a2b3c4d5e6f708192a3b"
    sms = await make_sms(TWILIO_MESSAGING_SERVICE_SID=service, TWILIO_FROM="")
    result = await sms.channel.send(outbound(thread={"twilio_from": "+33700000099"}))
    [sent] = await sms.fake.wait_for(1)
    assert (sent.messaging_service_sid, sent.from_) == (service, None)
    assert result.meta["provider_status"] == "accepted"


async def test_reply_goes_out_from_the_number_the_member_wrote_to(sms: Harness) -> None:
    await sms.channel.send(outbound(thread={"twilio_from": "+33700000099"}))
    await sms.channel.send(outbound(thread={"twilio_from": "whatsapp:+33700000099"}))  # not an SMS sender
    await sms.channel.send(outbound(thread={"chat_id": 42}))  # another channel's thread
    assert [m.from_ for m in await sms.fake.wait_for(3)] == ["+33700000099", OUR_NUMBER, OUR_NUMBER]


@pytest.mark.parametrize(
    ("fault", "error", "code", "retry_after"),
    [
        ({"status": 429, "code": 20429, "retry_after": 7}, Throttled, "20429", 7.0),
        ({"status": 429, "code": 20429}, Throttled, "20429", None),
        ({"status": 500}, ProviderUnavailable, "500", None),
        ({"status": 503, "code": 20503, "message": "Service unavailable"}, ProviderUnavailable, "20503", None),
        ({"drop": True}, AmbiguousSend, None, None),  # it may have been created: settled before resending
        ({"status": 400, "code": 21610}, ContactOptedOut, "21610", None),
        ({"status": 400, "code": 21211}, PermanentFailure, "21211", None),
        (
            {"status": 403, "code": 21408, "message": "Permission to send an SMS has not been enabled"},
            PermanentFailure,
            "21408",
            None,
        ),
    ],
    ids=["429+Retry-After", "429", "500", "503", "dropped connection", "21610", "21211", "403"],
)
async def test_provider_errors_map_to_send_errors(
    sms: Harness, fault: dict[str, Any], error: type[SendError], code: str | None, retry_after: float | None
) -> None:
    sms.fake.inject(**fault)
    with pytest.raises(SendError) as caught:
        await sms.channel.send(outbound())
    assert type(caught.value) is error
    assert caught.value.code == code
    assert caught.value.retryable is issubclass(error, Throttled | ProviderUnavailable)
    if isinstance(caught.value, Throttled):
        assert caught.value.retry_after == retry_after
    assert sms.fake.messages == []
    # The fault was for one request only: the next send goes through.
    assert (await sms.channel.send(outbound())).external_id


async def test_recipient_blocked_at_twilio_is_opted_out(sms: Harness) -> None:
    sms.fake.block(MEMBER)
    with pytest.raises(ContactOptedOut):
        await sms.channel.send(outbound())


async def test_refused_credentials_are_retryable(make_sms: HarnessFactory) -> None:
    sms = await make_sms(TWILIO_AUTH_TOKEN="not-the-right-token")
    with pytest.raises(ProviderUnavailable) as caught:
        await sms.channel.send(outbound())
    assert caught.value.code == "20003"
    [request] = sms.fake.requests
    assert not request.authorized and request.status == 401


async def test_slow_provider_times_out_as_unavailable(make_sms: HarnessFactory) -> None:
    sms = await make_sms(SEND_TIMEOUT_S="1")
    sms.fake.inject(delay=3.0)
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable):
        await sms.channel.send(outbound())
    assert time.monotonic() - started < 2.5


async def test_nothing_is_sent_for_an_invalid_address_or_empty_text(sms: Harness) -> None:
    for msg in (
        outbound().with_(urn="mailto:jeanne@example.fr"),
        outbound().with_(urn="tel:0639980012"),
        outbound("   "),
    ):
        with pytest.raises(PermanentFailure):
            await sms.channel.send(msg)
    assert sms.fake.requests == []


async def test_sends_do_not_block_the_event_loop(sms: Harness) -> None:
    sms.fake.inject(10, delay=0.3)
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    tick_task = asyncio.create_task(ticker())
    started = time.monotonic()
    results = await asyncio.gather(*(sms.channel.send(outbound(f"Message {i}")) for i in range(10)))
    elapsed = time.monotonic() - started
    done.set()
    await tick_task
    assert len({r.external_id for r in results}) == 10
    assert elapsed < 1.5, f"10 sends of 0.3 s each took {elapsed:.2f} s: they ran one after the other"
    assert ticks >= 10, "the event loop was blocked while sending"


async def test_stop_closes_the_http_session(sms: Harness) -> None:
    await sms.channel.send(outbound())
    http = sms.channel.sender._http
    assert http is not None and not http.session.closed
    await sms.channel.stop()
    assert http.session.closed


def test_retry_after_header_forms() -> None:
    now = time.time()
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("99999") == 3600.0
    in_two_minutes = parse_retry_after(formatdate(now + 120, usegmt=True), now=now)
    assert in_two_minutes is not None and 118 <= in_two_minutes <= 121
