"""The SMS channel inside the real gateway: a signed SMS in, the reply out at the fake
Twilio, its delivery reported back by signed callbacks; and a STOP honoured end to end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from channels.sms import sms_info
from gateway import keys
from gateway.app import Gateway
from gateway.responders import ACK_TEXT
from tests.channels.sms.sms_harness import AUTH_TOKEN, OUR_NUMBER, PUBLIC_URL, sms_settings
from tests.fakes.twilio import FakeTwilio, inbound_params, signed_inbound

MEMBER = "+33639980012"
INBOUND = "/sms/twilio/inbound"


@pytest.fixture
async def gateway_client(
    redis: Redis, settings_env: dict[str, str], fake_twilio: FakeTwilio
) -> AsyncIterator[tuple[Gateway, TestClient]]:  # type: ignore[type-arg]
    settings = sms_settings(settings_env, fake_twilio)
    gateway = Gateway(settings, redis, channel_names=["sms"])
    client: TestClient = TestClient(TestServer(gateway.build_app(), host="127.0.0.1"))  # type: ignore[type-arg]
    await client.start_server()
    yield gateway, client
    await client.close()


async def wait_until(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.02)
    raise TimeoutError("condition not met in time")


async def test_sms_in_reply_out_delivery_back(
    gateway_client: tuple[Gateway, TestClient],  # type: ignore[type-arg]
    fake_twilio: FakeTwilio,
    redis: Redis,
) -> None:
    gateway, client = gateway_client
    headers, body = signed_inbound(
        PUBLIC_URL, INBOUND, AUTH_TOKEN, inbound_params(MEMBER, "Où en est mon remboursement ?", to=OUR_NUMBER)
    )
    resp = await client.post(INBOUND, data=body, headers=headers)
    assert resp.status == 200

    [reply] = await fake_twilio.wait_for(1, timeout=10)
    assert (reply.to, reply.from_, reply.body) == (MEMBER, OUR_NUMBER, ACK_TEXT)

    codes = await fake_twilio.deliver_callbacks(str(client.make_url("/sms/twilio/status")), sid=reply.sid)
    assert codes == [200, 200, 200]
    ref = await redis.get(keys.provider_ref("sms", reply.sid))
    assert ref, "the dispatcher remembered Twilio's SID"
    conv_id, _, msg_id = ref.partition(" ")

    async def delivered() -> bool:
        record = await gateway.conversations.record(conv_id, msg_id)
        return record.get("status") == "delivered"

    await wait_until(delivered)
    record = await gateway.conversations.record(conv_id, msg_id)
    info = sms_info(ACK_TEXT)
    assert (record.get("send_encoding"), record.get("send_segments")) == (info.encoding, str(info.segments))


async def test_after_arret_nothing_more_is_sent(
    gateway_client: tuple[Gateway, TestClient],  # type: ignore[type-arg]
    fake_twilio: FakeTwilio,
    redis: Redis,
) -> None:
    _, client = gateway_client
    headers, body = signed_inbound(PUBLIC_URL, INBOUND, AUTH_TOKEN, inbound_params(MEMBER, "ARRÊT"))
    resp = await client.post(INBOUND, data=body, headers=headers)
    assert resp.status == 200
    assert "ne recevrez plus" in await resp.text()
    assert await redis.sismember(keys.opt_out("sms"), f"tel:{MEMBER}")
    # A later question from the same member is answered... by nobody over SMS: opted out.
    headers, body = signed_inbound(PUBLIC_URL, INBOUND, AUTH_TOKEN, inbound_params(MEMBER, "Bonjour ?"))
    assert (await client.post(INBOUND, data=body, headers=headers)).status == 200

    async def reply_refused() -> bool:
        for key in await redis.keys("gw:conv:*:msg:*"):
            if await redis.hget(key, "error_code") == "opted_out":
                return True
        return False

    # The dispatcher took the acknowledgement of "Bonjour ?" and refused it: opted out.
    await wait_until(reply_refused)
    assert fake_twilio.requests == []


async def test_an_interrupted_send_is_settled_with_twilio_not_repeated(
    gateway_client: tuple[Gateway, TestClient],  # type: ignore[type-arg]
    fake_twilio: FakeTwilio,
    redis: Redis,
) -> None:
    """A worker killed mid-request leaves the send in flight: the next one asks Twilio before sending."""
    gateway, _ = gateway_client
    from gateway.envelope import Message, now_ms

    reached = Message(id="n1", channel="sms", urn=f"tel:{MEMBER}", direction="out", text="Notice A",
                      conversation_id="conv-x")  # fmt: skip
    lost = Message(id="n2", channel="sms", urn="tel:+33639980013", direction="out", text="Notice B",
                   conversation_id="conv-x")  # fmt: skip
    # Twilio accepted the first (the answer never came back); the second never left.
    await gateway.channels["sms"].send(reached)  # type: ignore[attr-defined]
    for msg in (reached, lost):
        await gateway.conversations.append(msg, status="queued")
        await redis.hset(keys.message("conv-x", msg.id), "inflight_ms", now_ms() - 60_000)
        await gateway.dispatcher.handle(msg)  # the redelivery after the crash
    assert [m.body for m in fake_twilio.messages] == ["Notice A", "Notice B"]  # nothing twice, nothing lost
    first = await redis.hgetall(keys.message("conv-x", "n1"))
    assert first["status"] == "sent" and first["external_id"] == fake_twilio.messages[0].sid
    assert (await redis.hgetall(keys.message("conv-x", "n2")))["status"] == "sent"
    # A send started a moment ago may still be in flight in another consumer: not settled yet, looked at later.
    busy = Message(id="n3", channel="sms", urn="tel:+33639980014", direction="out", text="Notice C",
                   conversation_id="conv-x")  # fmt: skip
    await gateway.conversations.append(busy, status="queued")
    await redis.hset(keys.message("conv-x", "n3"), "inflight_ms", now_ms() - 500)
    await gateway.dispatcher.handle(busy)
    assert len(fake_twilio.messages) == 2
    assert int((await redis.hgetall(keys.message("conv-x", "n3")))["next_attempt_ms"]) > now_ms() + 10_000


async def test_an_interrupted_question_asked_again_is_not_taken_for_the_first(
    gateway_client: tuple[Gateway, TestClient],  # type: ignore[type-arg]
    fake_twilio: FakeTwilio,
    redis: Redis,
) -> None:
    """The bot asks the same question twice a moment apart and the second send is interrupted before it
    left: Twilio has the first, same text, same member; it is another of our messages, so the second is sent."""
    gateway, _ = gateway_client
    from gateway.envelope import Message, now_ms

    question = "Quelle est votre date de naissance ? (JJ/MM/AAAA)"
    first, again = (
        Message(id=n, channel="sms", urn=f"tel:{MEMBER}", direction="out", text=question, conversation_id="conv-q")
        for n in ("q1", "q2")
    )
    await gateway.conversations.append(first, status="queued")
    await gateway.dispatcher.handle(first)
    await gateway.conversations.append(again, status="queued")
    await redis.hset(keys.message("conv-q", "q2"), "inflight_ms", now_ms() - 30_000)  # killed mid-send
    await gateway.dispatcher.handle(again)
    assert [m.body for m in fake_twilio.messages] == [question, question]
    sids = [(await redis.hgetall(keys.message("conv-q", n)))["external_id"] for n in ("q1", "q2")]
    assert sids == [m.sid for m in fake_twilio.messages]
