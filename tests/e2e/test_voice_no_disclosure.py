"""Nothing personal in the logs from a phone call (issue 22), against ``run.py serve`` logging at DEBUG with the
voice channel and the loopback Twilio: the caller's number, what they say and type, and the agent's own phone
(typed in « Mon profil », rung by « Prendre l'appel ») are canaries that must appear nowhere in the product's
log, while the call goes through the bot's turns, the agents' queue, the agent's leg and the bridge."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from redis.asyncio import Redis

from bot.actions import state as bot_state
from gateway import keys
from gateway.redis_client import connect
from tests.channels.voice.twiml_check import check_twiml
from tests.e2e.product import ACCOUNT_SID, AUTH_TOKEN, Product, loopback_env
from tests.e2e.test_console_browser import PASSWORD, create_user
from tests.fakes.twilio import FakeTwilio
from tests.fakes.twilio_voice import PhoneCall

VOICE_NUMBER = "+33100000000"
CALLER = "+33199006611"
AGENT_TYPED = "06 55 44 33 22"
CANARIES = ("CANARI-VOIX-1111", "CANARI-VOIX-2222", "73737373", "199006611", "655443322", "55 44 33 22",
            "6 55 44 33")  # fmt: skip


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as twilio:
        yield twilio


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Redis]:
    client = connect(redis_url)
    yield client
    await client.aclose()


async def until_true(check: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"waited {timeout}s for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.timeout(240)
async def test_a_call_leaves_no_caller_words_and_no_phone_number_in_the_logs(
    fake: FakeTwilio, store: Redis, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp = tmp_path_factory.mktemp("voicecanary")
    env = loopback_env(tmp / "var", fake.base_url, "http://127.0.0.1:9/telegram", "smtp://127.0.0.1:9")
    env.pop("TELEGRAM_TOKEN")
    env.update(LOG_LEVEL="DEBUG", TWILIO_VOICE_NUMBER=VOICE_NUMBER, OPENING_HOURS="mon-sun 00:00-24:00",
               REDIS_URL=redis_url)  # fmt: skip
    product = Product(env, tmp / "product.log")
    await product.start()
    try:
        await create_user(redis_url, "leon", "Léon", "--skills", "benefits")
        origin = {"Origin": product.url}
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            # The agent signs in and types his phone in « Mon profil ».
            async with http.post(product.url + "/console/login", data={"login": "leon", "password": PASSWORD},
                                 headers=origin, allow_redirects=False) as resp:  # fmt: skip
                assert resp.status == 303
            async with http.get(product.url + "/console/profile") as resp:
                found = re.search(r'name="csrf-token" content="([^"]+)"', await resp.text())
                assert found is not None
            csrf = {**origin, "X-CSRF-Token": found.group(1)}
            async with http.post(
                product.url + "/console/api/profile", json={"phone": AGENT_TYPED}, headers=csrf
            ) as resp:
                assert resp.status == 200, await resp.text()

            # A member calls, says and types canaries, and is put in the agents' queue.
            call = PhoneCall(fake, product.url, CALLER, to=VOICE_NUMBER)
            await call.start()
            await call.speak("CANARI-VOIX-1111 où en est mon remboursement")
            await call.press("73737373")
            conv = (await store.hgetall(keys.call(call.sid)))["conv"]
            await bot_state.handoff(store, conv, reason="ask_human", intent="", member=None,
                                    summary="Demandes : remboursement.")  # fmt: skip
            await call.speak("CANARI-VOIX-2222 je veux un conseiller")
            assert call.queue == conv

            # « Prendre l'appel »: his phone rings, he answers, the caller is bridged; both hang up.
            legs = len(fake.voice.legs)
            async with http.post(f"{product.url}/console/api/calls/{conv}/take", json={}, headers=csrf) as resp:
                assert resp.status == 200, await resp.text()
            await until_true(lambda: len(fake.voice.legs) > legs and fake.voice.legs[-1].bridged is call, "the bridge")
            leg = fake.voice.legs[-1]
            assert leg.to == "+33655443322"
            await call.end_bridge()
            await fake.voice.end_leg(leg)
            for document in (*call.documents, *leg.documents):
                check_twiml(document)
        await asyncio.sleep(1)
    finally:
        assert product.stop() == 0
    logged = product.log_path.read_text(encoding="utf-8", errors="replace")
    assert '"level": "debug"' in logged  # the log did run at DEBUG
    assert "call queued for an agent" in logged and "call ended" in logged  # the call was logged, without them
    assert [c for c in CANARIES if c in logged] == []
    assert "Traceback" not in logged
