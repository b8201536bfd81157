"""The dispatcher with a real channel (SMS) against the loopback Twilio API: retries with
backoff, Retry-After honoured, permanent failures and opt-outs recorded, nothing sent twice."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from gateway import keys
from gateway.app import Gateway
from gateway.envelope import Message
from gateway.settings import Settings
from tests.fakes.twilio import FakeTwilio

SID = "AC" + "1" * 32
TOKEN = "dispatcher-test-token-0000000000"
MEMBER = "+33639980500"


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(SID, TOKEN) as f:
        yield f


@pytest.fixture
async def gateway(redis: Redis, settings_env: dict[str, str], fake: FakeTwilio) -> AsyncIterator[Gateway]:
    settings = Settings.from_env(
        {
            **settings_env,
            "TWILIO_ACCOUNT_SID": SID,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "TWILIO_FROM": "+33700000002",
            "TWILIO_API_BASE": fake.base_url,
            "SEND_MAX_ATTEMPTS": "4",
            "SMS_RATE_PER_S": "1000",
            "SEND_TIMEOUT_S": "1",  # a dropped send is settled with Twilio 6 s later
        }
    )
    gw = Gateway(settings, redis, channel_names=["sms"])
    await gw.start_channels()
    await gw.start_workers()
    yield gw
    await gw.stop_workers()
    await gw.stop_channels()


def outbound(n: int, text: str = "Votre remboursement a été versé.") -> Message:
    return Message(
        id=f"test-out-{n}",
        channel="sms",
        urn=f"tel:{MEMBER}",
        direction="out",
        text=text,
        conversation_id=f"conv-{n}",
    )


async def settled(gw: Gateway, msg: Message, timeout: float = 15.0) -> dict[str, str]:
    """Wait until the message reached a state the dispatcher will not change by itself."""
    assert msg.conversation_id
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = await gw.conversations.record(msg.conversation_id, msg.id)
        # The status is written first and the in-flight mark cleared last: without the mark the record is whole.
        if rec.get("status") in ("sent", "failed", "delivered") and "inflight_ms" not in rec:
            return rec
        await asyncio.sleep(0.02)
    raise AssertionError(f"message not settled: {await gw.conversations.record(msg.conversation_id, msg.id)}")


async def test_5xx_and_dropped_connections_are_retried_then_sent_once(gw_fake: tuple[Gateway, FakeTwilio]) -> None:
    """A 503 is retried; a connection cut after the request left is settled with Twilio (its message
    list) once the send has surely ended, and sent again only because Twilio never created it."""
    gw, fake = gw_fake
    fake.inject(status=503)
    fake.inject(drop=True)
    msg = outbound(1)
    assert await gw.router.enqueue(msg)
    rec = await settled(gw, msg, timeout=20)
    assert rec["status"] == "sent" and rec["attempts"] == "3"
    assert len(fake.messages) == 1 and fake.messages[0].body == msg.text
    assert rec["external_id"] == fake.messages[0].sid
    # Queueing the same message again is a no-op.
    assert not await gw.router.enqueue(msg)


async def test_retry_after_is_honoured(gw_fake: tuple[Gateway, FakeTwilio]) -> None:
    gw, fake = gw_fake
    fake.inject(status=429, code=20429, retry_after=1)
    msg = outbound(2)
    started = time.monotonic()
    await gw.router.enqueue(msg)
    rec = await settled(gw, msg)
    assert rec["status"] == "sent"
    assert time.monotonic() - started >= 1.0
    assert len(fake.requests) == 2


async def test_permanent_failure_is_recorded_with_the_provider_reason(gw_fake: tuple[Gateway, FakeTwilio]) -> None:
    gw, fake = gw_fake
    fake.inject(status=400, code=21211)
    msg = outbound(3)
    await gw.router.enqueue(msg)
    rec = await settled(gw, msg)
    assert (rec["status"], rec["failure"], rec["error_code"]) == ("failed", "permanent", "21211")
    assert len(fake.requests) == 1  # never retried


async def test_retries_stop_after_the_configured_attempts(gw_fake: tuple[Gateway, FakeTwilio]) -> None:
    gw, fake = gw_fake
    fake.inject(n=10, status=500)
    msg = outbound(4)
    await gw.router.enqueue(msg)
    rec = await settled(gw, msg)
    assert (rec["status"], rec["failure"], rec["error_code"]) == ("failed", "retries_exhausted", "500")
    assert len(fake.requests) == 4


async def test_opted_out_contact_gets_nothing(gw_fake: tuple[Gateway, FakeTwilio], redis: Redis) -> None:
    gw, fake = gw_fake
    await redis.sadd(keys.opt_out("sms"), f"tel:{MEMBER}")
    msg = outbound(5)
    await gw.router.enqueue(msg)
    rec = await settled(gw, msg)
    assert (rec["status"], rec["failure"]) == ("failed", "opted_out")
    assert fake.requests == []


async def test_provider_opt_out_is_not_retried(gw_fake: tuple[Gateway, FakeTwilio]) -> None:
    gw, fake = gw_fake
    fake.block(MEMBER)
    msg = outbound(6)
    await gw.router.enqueue(msg)
    rec = await settled(gw, msg)
    assert (rec["status"], rec["failure"]) == ("failed", "opted_out")
    assert len(fake.requests) == 1


@pytest.fixture
def gw_fake(gateway: Gateway, fake: FakeTwilio) -> tuple[Gateway, FakeTwilio]:
    return gateway, fake


async def test_two_handlers_of_one_message_send_it_once(gw_fake: tuple[Gateway, FakeTwilio], redis: Redis) -> None:
    """An entry claimed back from a consumer stuck on a Redis reconnect is handled twice at once: both
    find it unsent, but only the one that still finds the mark it saw sends (the kill -9 chaos run
    caught two SMS for one notice before the send was taken atomically)."""
    gw, fake = gw_fake
    fake.inject(delay=0.5)  # the first send is still in flight when the second handler gets there
    msg = outbound(7)
    await gw.conversations.append(msg, status="queued")
    await asyncio.gather(gw.dispatcher.handle(msg), gw.dispatcher.handle(msg))
    rec = await redis.hgetall(keys.message(str(msg.conversation_id), msg.id))
    assert len([m for m in fake.messages if m.body == msg.text]) == 1
    assert rec["status"] == "sent" and rec["attempts"] == "1" and rec.get("next_attempt_ms")


async def test_replies_keep_their_share_of_the_rate_during_a_campaign(
    redis: Redis, settings_env: dict[str, str], fake: FakeTwilio
) -> None:
    """200 notices queued at 20 SMS/s (10 s of sending), then 10 replies to members: the replies go out
    while the campaign is still sending (notices have their own stream and at most BULK_SHARE of the
    rate). With notices in the replies' stream, as before, the replies waited 10.4 s."""
    settings = Settings.from_env({**settings_env, "TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": TOKEN,
                                  "TWILIO_FROM": "+33700000002", "TWILIO_API_BASE": fake.base_url,
                                  "SMS_RATE_PER_S": "20"})  # fmt: skip
    gw = Gateway(settings, redis, channel_names=["sms"])
    await gw.start_channels()
    await gw.start_workers()
    try:
        notices = [
            Message(id=f"c.x.M{i:05d}.0", channel="sms", urn=f"tel:+336398{i:05d}", direction="out",
                    text="Votre cotisation évolue.", conversation_id=f"c.x.M{i:05d}", meta={"campaign": "x"})
            for i in range(200)
        ]  # fmt: skip
        assert await gw.router.enqueue_many(notices) == 200
        await asyncio.sleep(1.0)  # the campaign is going out at full speed
        started = time.monotonic()
        for n in range(10):
            await gw.router.enqueue(outbound(1000 + n, "Votre carte a été envoyée."))
        for n in range(10):
            await settled(gw, outbound(1000 + n), timeout=20)
        replies_took = time.monotonic() - started
        notices_sent = sum(1 for m in fake.messages if m.body == "Votre cotisation évolue.")
    finally:
        await gw.stop_workers()
        await gw.stop_channels()
    assert replies_took < 5.0, replies_took
    assert notices_sent < 200  # the campaign was still going when the replies were out
