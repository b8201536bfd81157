"""SMS end to end against ``run.py serve``: signed Twilio webhooks in, replies seen at the
loopback Twilio API, redeliveries answered once, and kill -9 between accepting and replying."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
from redis.asyncio import Redis

from gateway import keys
from gateway.responders import ACK_TEXT
from tests.e2e.conftest import AUTH_TOKEN, OUR_NUMBER
from tests.e2e.product import Product
from tests.fakes.twilio import FakeTwilio, inbound_params, signed_inbound

PATH = "/sms/twilio/inbound"


async def post_sms(
    session: aiohttp.ClientSession, product: Product, member: str, text: str, sid: str | None = None
) -> tuple[int, str]:
    params = inbound_params(member, text, to=OUR_NUMBER, sid=sid)
    headers, body = signed_inbound(product.url, PATH, AUTH_TOKEN, params)
    async with session.post(product.url + PATH, data=body, headers=headers) as resp:
        await resp.read()
        return resp.status, params["MessageSid"]


async def redis_of(product: Product) -> Redis:
    port = (product.env_var_dir / "redis" / "redis.port").read_text().strip()
    return Redis.from_url(f"redis://127.0.0.1:{port}/0", decode_responses=True)


async def quiet(redis: Redis, timeout: float = 20.0) -> None:
    """Wait until nothing is pending or scheduled for retry: no further send can happen."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        pending_in = (await redis.xpending(keys.stream("in", 0), "router"))["pending"]
        pending_out = (await redis.xpending(keys.stream("out", 0), "dispatcher"))["pending"]
        retries = await redis.zcard(keys.retry(0))
        out_len = await redis.xlen(keys.stream("out", 0))
        info = await redis.xinfo_groups(keys.stream("out", 0))
        lag = info[0].get("lag") or 0 if info else 0
        if await redis.exists(keys.stream("bulk", 0)):  # campaign notices
            for group in await redis.xinfo_groups(keys.stream("bulk", 0)):
                pending_out += int(group.get("pending") or 0)
                lag += int(group.get("lag") or 0)
        if pending_in == pending_out == retries == lag == 0 and out_len > 0:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not quiet: in={pending_in} out={pending_out} retries={retries} lag={lag}")
        await asyncio.sleep(0.05)


async def test_signed_sms_in_reply_out_and_redeliveries_answered_once(
    make_product: Callable[..., Product], fake_twilio: FakeTwilio
) -> None:
    product = make_product()
    await product.start()
    member = "+33639980101"
    async with aiohttp.ClientSession() as session:
        status, sid = await post_sms(session, product, member, "Bonjour, où en est mon remboursement ?")
        assert status == 200
        # Twilio retries: the same MessageSid three times, concurrently.
        again = await asyncio.gather(
            *(post_sms(session, product, member, "Bonjour, où en est mon remboursement ?", sid) for _ in range(3))
        )
        assert [s for s, _ in again] == [200, 200, 200]
        # A forged request is refused and changes nothing.
        params = inbound_params(member, "faux", to=OUR_NUMBER)
        headers, body = signed_inbound(product.url, PATH, "wrong-token", params)
        async with session.post(product.url + PATH, data=body, headers=headers) as resp:
            assert resp.status == 403
    [reply] = await fake_twilio.wait_for(1, timeout=15)
    assert (reply.to, reply.from_, reply.body) == (member, OUR_NUMBER, ACK_TEXT)
    redis = await redis_of(product)
    await quiet(redis)
    assert len([m for m in fake_twilio.messages if m.to == member]) == 1
    assert await redis.xlen(keys.stream("in", 0)) == 1
    # The delivery report comes back through signed status callbacks.
    await fake_twilio.deliver_callbacks(url=product.url + "/sms/twilio/status", sid=reply.sid)
    conv_id = await _conversation_of(redis, f"tel:{member}")
    history = await _history(redis, conv_id)
    assert [h["direction"] for h in history] == ["in", "out"]
    assert history[1]["status"] == "delivered"
    await redis.aclose()
    # Logs never carry message bodies or the member's number.
    assert product.stop() == 0
    logs = product.logs()
    assert "remboursement" not in logs and member not in logs and member[-8:] not in logs


async def test_kill_9_between_accepting_and_replying_sends_each_reply_once(
    make_product: Callable[..., Product], fake_twilio: FakeTwilio
) -> None:
    # The provider is down: replies are accepted into the outbound stream and retried.
    fake_twilio.inject(n=10_000, status=503)
    product = make_product()
    await product.start()
    members = [f"+336399802{i:02d}" for i in range(10)]
    async with aiohttp.ClientSession() as session:
        results = await asyncio.gather(*(post_sms(session, product, m, "Bonjour") for m in members))
    assert all(status == 200 for status, _ in results)
    await fake_twilio.wait_for_requests(5, timeout=15)  # sends are being attempted and failing
    product.kill9()
    # Back up: the provider answers again, the product restarts on the same (surviving) Redis.
    fake_twilio.reset()
    await restart_and_expect_each_answered_once(make_product, fake_twilio, members)


async def test_kill_9_right_after_accepting_loses_nothing(
    make_product: Callable[..., Product], fake_twilio: FakeTwilio
) -> None:
    product = make_product()
    await product.start()
    members = [f"+336399803{i:02d}" for i in range(30)]
    async with aiohttp.ClientSession() as session:
        results = await asyncio.gather(*(post_sms(session, product, m, "Allo ?") for m in members))
    assert all(status == 200 for status, _ in results)
    product.kill9()  # whatever the router and dispatcher had in hand
    await restart_and_expect_each_answered_once(make_product, fake_twilio, members)


async def test_ctrl_c_finishes_what_it_accepted(make_product: Callable[..., Product], fake_twilio: FakeTwilio) -> None:
    fake_twilio.inject(n=5, delay=0.5)  # sends in flight when Ctrl-C arrives
    product = make_product()
    await product.start()
    members = [f"+336399804{i:02d}" for i in range(5)]
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(post_sms(session, product, m, "Bonjour") for m in members))
    await fake_twilio.wait_for_requests(1, timeout=10)
    assert product.stop() == 0  # clean exit, private Redis shut down with it
    # Whatever was not finished is still there for the next start: nothing accepted is lost.
    await restart_and_expect_each_answered_once(make_product, fake_twilio, members)


async def restart_and_expect_each_answered_once(
    make_product: Callable[..., Product], fake_twilio: FakeTwilio, members: list[str]
) -> None:
    """Start the product again on the same Redis; every member gets exactly one answer."""
    again = make_product()
    await again.start()
    await fake_twilio.wait_for(len(members), timeout=30)
    redis = await redis_of(again)
    await quiet(redis)
    assert sorted(m.to for m in fake_twilio.messages) == sorted(members)
    assert all(m.body == ACK_TEXT for m in fake_twilio.messages)
    await redis.aclose()
    assert again.stop() == 0


async def _conversation_of(redis: Redis, urn: str) -> str:
    contact = await redis.get(keys.address(urn))
    return str(await redis.get(keys.open_conversation(contact, "sms")))


async def _history(redis: Redis, conv_id: str) -> list[dict[str, str]]:
    import json

    out = []
    for msg_id in await redis.zrange(keys.conversation_log(conv_id), 0, -1):
        rec = await redis.hgetall(keys.message(conv_id, msg_id))
        msg = json.loads(rec["m"])
        out.append({"direction": msg["direction"], "status": rec.get("status", "")})
    return out
