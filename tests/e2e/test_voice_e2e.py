"""Phone calls against ``run.py serve`` (the acknowledging responder: the gateway's side of a call, not
the bot's; the bot on the phone is tests/e2e/test_voice_bot_browser.py). One product for the module, with
``VOICE_REPLY_WAIT_S=0``: every reply is late for the first webhook, so every turn goes through the
holding phrase and the ``<Redirect>`` that fetches it. Every TwiML document is checked."""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator

import aiohttp
import pytest
from redis.asyncio import Redis

from gateway import keys
from gateway.redis_client import connect
from gateway.responders import ACK_TEXT
from tests.channels.voice.twiml_check import check_twiml
from tests.e2e.product import ACCOUNT_SID, AUTH_TOKEN, Product, loopback_env
from tests.fakes.twilio import FakeTwilio, sign
from tests.fakes.twilio_voice import PhoneCall, post_signed

VOICE_NUMBER = "+33100000000"
CALLER = "+33199007777"


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as twilio:
        yield twilio


@pytest.fixture(scope="module")
async def product(
    fake: FakeTwilio, tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> AsyncIterator[Product]:
    tmp = tmp_path_factory.mktemp("voice")
    env = loopback_env(tmp / "var", fake.base_url, "http://127.0.0.1:9/telegram", "smtp://127.0.0.1:9")
    env.pop("TELEGRAM_TOKEN")
    env.update(TWILIO_VOICE_NUMBER=VOICE_NUMBER, VOICE_REPLY_WAIT_S="0", OPENING_HOURS="mon-sun 00:00-24:00",
               REDIS_URL=redis_url)  # fmt: skip
    product = Product(env, tmp / "product.log")
    await product.start()
    yield product
    assert product.stop() == 0


@pytest.fixture
async def store(product: Product, redis_url: str) -> AsyncIterator[Redis]:
    """The product's Redis, read as it is (not flushed: the module's product runs on it)."""
    client = connect(redis_url)
    yield client
    await client.aclose()


def checked(call: PhoneCall) -> list[str]:
    spoken: list[str] = []
    for document in call.documents:
        spoken += check_twiml(document)
    return spoken


async def test_a_turn_is_said_after_a_holding_phrase_and_a_replayed_webhook_is_one_turn(
    product: Product, fake: FakeTwilio
) -> None:
    call = PhoneCall(fake, product.url, CALLER, to=VOICE_NUMBER)
    greeting = await call.start()
    assert greeting.startswith("Bonjour, vous êtes bien à votre mutuelle.")
    action = call.gather_action
    assert action and urllib.parse.urlsplit(action).query == "step=1"

    heard = await call.speak("bonjour je voudrais savoir où en est mon dossier")
    # The reply was not there for the first webhook: a holding phrase, a <Redirect>, then the reply.
    assert heard.startswith("Un instant, s'il vous plaît.")
    assert ACK_TEXT in heard and heard.count(ACK_TEXT) == 1
    assert any("<Redirect" in d for d in call.documents)
    assert call.gather_action and call.gather_action.endswith("step=2")

    # Twilio sends the same webhook again (a timeout on its side): the same turn, said again, not a new one.
    replay = PhoneCall(fake, product.url, CALLER, to=VOICE_NUMBER)
    replay.sid, replay.gather_action = call.sid, action
    again = await replay.speak("bonjour je voudrais savoir où en est mon dossier")
    assert ACK_TEXT in again and replay.gather_action and replay.gather_action.endswith("step=2")
    await call.hang_up()
    checked(call)
    checked(replay)
    async with aiohttp.ClientSession() as session, session.get(product.url + "/metrics") as resp:
        metrics = await resp.text()
    for event in ("received", "turn", "holding", "ended"):
        assert f'gateway_calls_total{{event="{event}"}}' in metrics, event
    assert 'gateway_inbound_duplicates_total{channel="voice"} 1.0' in metrics  # the replayed turn


async def test_one_inbound_message_per_turn_in_the_conversation(product: Product, fake: FakeTwilio, store: Redis) -> None:
    call = PhoneCall(fake, product.url, "+33199008888", to=VOICE_NUMBER)
    await call.start()
    action = call.gather_action
    assert action
    await call.speak("première question")
    for _ in range(2):  # the same webhook twice more
        status, body = await post_signed(fake, action, call.params(SpeechResult="première question", Confidence="0.9"))
        assert status == 200
        call.documents.append(body)
    await call.speak("1 2 3 4 5 6")  # a code said digit by digit reads as typed
    state = await store.hgetall(keys.call(call.sid))
    conv = state["conv"]
    history = [await store.hget(keys.message(conv, m), "m") for m in await store.zrange(keys.conversation_log(conv), 0, -1)]
    inbound = [h for h in history if h and '"direction":"in"' in h]
    assert len(inbound) == 2, inbound  # two turns, whatever the redeliveries
    assert '"text":"123456"' in inbound[1]
    assert '"sender_authentic":null' in inbound[0]  # attested caller: the channel vouches for the number
    await call.hang_up()
    # The call is over: the next call from this number is a new conversation.
    contact = await store.hget(keys.conversation(conv), "contact_id")
    assert await store.get(keys.open_conversation(contact, "voice")) is None
    checked(call)


async def test_an_unattested_caller_is_not_the_number_it_shows(product: Product, fake: FakeTwilio, store: Redis) -> None:
    call = PhoneCall(fake, product.url, CALLER, to=VOICE_NUMBER, stir="TN-Validation-Passed-C")
    await call.start()
    await call.speak("bonjour")
    conv = (await store.hgetall(keys.call(call.sid)))["conv"]
    contact = await store.hget(keys.conversation(conv), "contact_id")
    assert await store.get(keys.address("unproven:tel:" + CALLER)) == contact  # apart from the number's contact
    assert await store.hget(keys.contact(contact), "unproven") == "1"
    await call.hang_up()
    checked(call)


async def test_forged_and_missing_signatures_are_refused_and_change_nothing(
    product: Product, fake: FakeTwilio, store: Redis
) -> None:
    call = PhoneCall(fake, product.url, CALLER, to=VOICE_NUMBER)
    url = product.url + "/voice/twilio/incoming"
    params = call.params()
    body = urllib.parse.urlencode(params)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    async with aiohttp.ClientSession() as session:
        for headers in (
            form,  # no signature
            {**form, "X-Twilio-Signature": sign(url, "not-the-token", params)},  # another account's token
            {**form, "X-Twilio-Signature": sign(product.url + "/sms/twilio/inbound", AUTH_TOKEN, params)},  # signed for another URL
            {**form, "X-Twilio-Signature": sign(url, AUTH_TOKEN, {**params, "StirVerstat": "No-TN-Validation"})},
        ):
            for path in ("/voice/twilio/incoming", "/voice/twilio/gather?step=1", "/voice/twilio/status"):
                async with session.post(product.url + path, data=body, headers=headers) as resp:
                    assert resp.status == 403, (path, await resp.text())
    assert not await store.exists(keys.call(call.sid))
