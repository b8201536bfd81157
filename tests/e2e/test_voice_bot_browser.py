"""Phone calls end to end: ``run.py serve`` with the voice channel, the real Rasa bot and action server,
the loopback Twilio's voice platform, and the agents' console in Chromium. One product for the module.

* A member calls from her registered number (STIR/SHAKEN attested), asks where her reimbursement is,
  types her birth date on the keypad, hears the claim's status said for the ear, asks for « conseiller »
  and waits in the queue; the agent clicks « Prendre l'appel », her phone rings, the bridge TwiML dials
  the queue, the call ends, and the supervisor's dashboard counts one call answered within 60 s.
* A caller showing the member's number without attestation, with her right birth date: nothing is said
  of her file before the one-time code sent by SMS to the registered phone.
* A caller who hangs up while waiting: counted as abandoned once, offered a callback by SMS when verified
  (« RAPPEL » in reply books it), sent nothing when not.
* A callback dialled from the console (« Appeler »): the member does not answer; the retry is scheduled
  without the agent clicking anything.

Every TwiML document the product returned is checked (allowed verbs and attributes, French only).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect
from redis.asyncio import Redis

from gateway import keys
from gateway.conversations import paris_day
from gateway.hours import PARIS, holiday_name
from gateway.redis_client import connect
from tests.channels.voice.twiml_check import check_twiml
from tests.e2e.accessibility import assert_accessible
from tests.e2e.bot_data import CAMILLE, seed
from tests.e2e.browser import chromium
from tests.e2e.product import ACCOUNT_SID, AUTH_TOKEN, Product, loopback_env
from tests.e2e.test_console_browser import create_user, log_in
from tests.e2e.test_sms_e2e import post_sms
from tests.fakes.twilio import FakeTwilio
from tests.fakes.twilio_voice import Leg, PhoneCall

pytestmark = pytest.mark.browser
VOICE_NUMBER = "+33100000000"
AGENT_PHONE = "+33612000001"
ALWAYS_OPEN = "mon-sun 00:00-24:00"


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as twilio:
        yield twilio


@pytest.fixture(scope="module")
async def store(redis_url: str) -> AsyncIterator[Redis]:
    """The product's Redis (the tests' server): flushed and seeded once for the module."""
    client = connect(redis_url)
    await client.flushall()
    await seed(client)
    yield client
    await client.aclose()


@pytest.fixture(scope="module")
async def product(
    fake: FakeTwilio, store: Redis, rasa_url: str, actions_url: str, redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Product]:  # fmt: skip
    if holiday_name(dt.datetime.now(PARIS).date()):
        pytest.skip("agents take no call on a French public holiday")
    tmp = tmp_path_factory.mktemp("voicebot")
    env = loopback_env(tmp / "var", fake.base_url, "http://127.0.0.1:9/telegram", "smtp://127.0.0.1:9")
    env.pop("TELEGRAM_TOKEN")
    env.update(RESPONDER="rasa", RASA_URL=rasa_url, ACTIONS_URL=actions_url, REDIS_URL=redis_url,
               TWILIO_VOICE_NUMBER=VOICE_NUMBER, OPENING_HOURS=ALWAYS_OPEN)  # fmt: skip
    product = Product(env, tmp / "product.log")
    await product.start()
    await create_user(redis_url, "julie", "Julie", "--skills", "benefits,complaints", "--phone", AGENT_PHONE)
    await create_user(redis_url, "sophie", "Sophie", "--role", "supervisor")
    yield product
    assert product.stop() == 0


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


async def until(ready: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout}s for {what}")
        await asyncio.sleep(0.05)


def checked(*documents: str) -> None:
    for document in documents:
        check_twiml(document)


def sms_to(fake: FakeTwilio, number: str) -> list[str]:
    return [m.body for m in fake.messages if m.to == number]


async def press_take_call(agent: Page, fake: FakeTwilio, url: str) -> tuple[PhoneCall, str, int]:
    """Camille calls and asks for an adviser; ``agent`` presses « Prendre l'appel » on her waiting call.
    Returns the call, its conversation and how many call legs the loopback Twilio had before."""
    call = PhoneCall(fake, url, CAMILLE.phone, to=VOICE_NUMBER)
    await call.start()
    await call.speak("je veux parler à un conseiller")
    conv = call.queue
    assert conv
    legs = len(fake.voice.legs)
    item = agent.locator(f"#queue li[data-id='{conv}']")
    await item.wait_for(timeout=15_000)
    await item.locator("button.take-call").click()
    return call, conv, legs


@pytest.mark.timeout(300)
async def test_member_calls_is_verified_hears_her_claim_and_an_agent_takes_the_call(
    product: Product, fake: FakeTwilio, store: Redis, browser: Browser
) -> None:
    julie = await log_in(browser, product, "julie")  # online: the caller is told the expected wait
    call = PhoneCall(fake, product.url, CAMILLE.phone, to=VOICE_NUMBER)
    greeting = await call.start()
    assert greeting.startswith("Bonjour, vous êtes bien à votre mutuelle.")

    asked = await call.speak("où en est mon remboursement")
    assert "Pour vous répondre, je dois d'abord vérifier votre identité." in asked
    assert "Tapez-la sur le clavier" in asked and "JJ/MM" not in asked  # the birth date, on the keypad
    listing = await call.press("12031975")
    assert "Tapez 1 pour lunettes du " in listing and " ou 2 pour pharmacie du " in listing
    assert "€" not in listing and "420 euros" in listing
    answer = await call.press("2")
    assert "Votre remboursement pharmacie du " in answer and "est payé : 18 euros 80, versé le " in answer
    audit = [(i, e) for i, e in await store.xrange(keys.member_audit(CAMILLE.number))
             if not e["what"].startswith("agent_")]  # (the console lists complaints to Julie)  # fmt: skip
    assert [e["what"] for _, e in audit] == ["claims_list", "claim"] and {e["channel"] for _, e in audit} == {"voice"}

    waiting = await call.speak("je voudrais parler à un conseiller")
    assert "Je vous mets en relation avec un conseiller. Il va vous répondre." in waiting
    assert "Vous êtes le prochain appel. Temps d'attente estimé : environ" in waiting
    conv = call.queue
    assert conv and (await store.hgetall(keys.conversation(conv)))["status"] == "handoff"

    # The waiting call is in Julie's queue with the conversation and the member's record; she takes it.
    item = julie.locator(f"#queue li[data-id='{conv}']")
    await item.wait_for(timeout=15_000)
    assert "Appel" in await item.inner_text()
    await assert_accessible(julie, "console, a call waiting")
    await item.locator("button.take-call").click()
    await julie.wait_for_selector("#toast >> text=Votre téléphone sonne", timeout=10_000)
    await julie.wait_for_selector("#fiche >> text=Camille Durand", timeout=10_000)
    assert "où en est mon remboursement" in await julie.inner_text("#messages")

    # Twilio rings her phone from the mutuelle's number; her answer fetches the bridge, which dials the queue.
    await until(lambda: fake.voice.legs and fake.voice.legs[0].bridged is call, "the agent's leg bridged")
    leg: Leg = fake.voice.legs[0]
    assert leg.to == AGENT_PHONE and leg.from_ == VOICE_NUMBER
    assert f"<Queue>{conv}</Queue>" in leg.documents[0]
    checked(*leg.documents)
    await call.end_bridge()
    await fake.voice.end_leg(leg)
    assert leg.statuses == ["initiated", "ringing", "in-progress", "completed"]

    # The supervisor's dashboard: one call offered, answered, answered within 60 s.
    sophie = await log_in(browser, product, "sophie")
    await sophie.goto(product.url + "/console/supervisor")
    row = sophie.locator(f"#calls tr[data-day='{paris_day()}'][data-skill='all']")
    await row.wait_for(timeout=10_000)
    assert await row.locator(".offered").inner_text() == "1"
    assert await row.locator(".answered").inner_text() == "1"
    assert await row.locator(".answered-60").inner_text() == "1"
    assert await row.locator(".abandoned").inner_text() == "0"
    cells = await row.locator("td").all_inner_texts()
    assert cells[8].endswith(" s") and cells[9].endswith(" s")  # average wait and talk time
    assert await sophie.locator("#calls-chart line.target").count() == 2  # 90 % and 81 % drawn
    await assert_accessible(sophie, "dashboard with calls")
    checked(*call.documents)
    assert not julie.errors and not sophie.errors  # type: ignore[attr-defined]


@pytest.mark.timeout(180)
async def test_an_unattested_caller_with_the_right_birth_date_hears_nothing_before_the_code(
    product: Product, fake: FakeTwilio, store: Redis
) -> None:
    async def disclosed() -> int:
        return sum(
            1 for _, e in await store.xrange(keys.member_audit(CAMILLE.number)) if not e["what"].startswith("agent_")
        )

    before_audit = await disclosed()
    call = PhoneCall(fake, product.url, CAMILLE.phone, to=VOICE_NUMBER, stir="TN-Validation-Passed-C")
    await call.start()
    asked = await call.speak("où en est mon remboursement")
    assert "numéro d'adhérent" in asked and "date de naissance" not in asked
    refused = await call.press("12031975")  # her right birth date: not a factor for an unknown caller
    # Taken for what it is, a date where a member number is asked: the number asked again, with an example.
    assert "numéro d'adhérent" in refused and "M9876543" in refused
    assert "euros" not in refused and "pharmacie" not in refused
    sms_before = len(sms_to(fake, CAMILLE.phone))
    sent = await call.press("0000042")
    assert "un code à 6 chiffres vient d'être envoyé" in sent and "euros" not in sent
    assert await disclosed() == before_audit  # nothing disclosed yet
    await until(lambda: len(sms_to(fake, CAMILLE.phone)) > sms_before, "the one-time code by SMS")
    found = re.search(r"(?<!\d)\d{6}(?!\d)", sms_to(fake, CAMILLE.phone)[-1])
    assert found is not None, sms_to(fake, CAMILLE.phone)[-1]
    code = found.group()
    listing = await call.press(code)
    assert "Tapez 1 pour lunettes du " in listing
    await call.hang_up()
    checked(*call.documents)


@pytest.mark.timeout(180)
async def test_a_caller_who_hangs_up_while_waiting_is_abandoned_and_offered_a_callback_by_sms(
    product: Product, fake: FakeTwilio, store: Redis
) -> None:
    call = PhoneCall(fake, product.url, CAMILLE.phone, to=VOICE_NUMBER)
    await call.start()
    await call.speak("où en est ma carte de tiers payant")
    card = await call.press("12031975")
    assert "carte de tiers payant a été envoyée par courrier" in card
    await call.speak("je veux parler à un conseiller")
    conv = call.queue
    assert conv
    stats_before = await store.hgetall(keys.day_stats(paris_day()))
    await call.hang_up()
    stats = await store.hgetall(keys.day_stats(paris_day()))
    assert int(stats["calls_abandoned"]) == int(stats_before.get("calls_abandoned", 0)) + 1
    assert await store.zscore(keys.HANDOFF_QUEUE, conv) is None  # out of the agents' queue
    await until(lambda: any("/callback" in t for t in sms_to(fake, CAMILLE.phone)), "the callback offer by SMS")
    offer = sms_to(fake, CAMILLE.phone)[-1]
    assert "Vous avez raccroché avant qu'un conseiller ne vous réponde" in offer
    # What she can act on: « RAPPEL » books the slot in progress (always open here), or the form, prefilled.
    today = dt.datetime.now(PARIS).date().isoformat()
    assert "répondez RAPPEL à ce SMS et un conseiller vous appellera aujourd'hui entre 0 h et 23 h" in offer
    assert f"{product.url}/callback?date={today}&slot=00%3A00-23%3A59" in offer
    checked(*call.documents)
    async with aiohttp.ClientSession() as session:
        status, _ = await post_sms(session, product, CAMILLE.phone, "Rappel")
        assert status == 200
    await until(lambda: sms_to(fake, CAMILLE.phone)[-1].startswith("Votre demande de rappel"), "the booking by SMS")
    cb_id = await store.hget(keys.conversation(conv), "callback_id")
    cb = await store.hgetall(keys.callback(cb_id))
    assert cb["phone"] == CAMILLE.phone and cb["status"] == "pending" and cb["ref"] in sms_to(fake, CAMILLE.phone)[-1]
    assert await store.zscore(keys.CALLBACKS_DUE, cb_id) is not None
    assert int((await store.hgetall(keys.day_stats(paris_day())))["calls_abandoned"]) == int(
        stats["calls_abandoned"])  # counted once  # fmt: skip


@pytest.mark.timeout(180)
async def test_an_unverified_caller_who_hangs_up_while_waiting_is_counted_but_sent_nothing(
    product: Product, fake: FakeTwilio, store: Redis
) -> None:
    call = PhoneCall(fake, product.url, CAMILLE.phone, to=VOICE_NUMBER, stir="TN-Validation-Passed-C")
    await call.start()
    await call.speak("je veux parler à un conseiller")
    conv = call.queue
    assert conv
    assert not (await store.hgetall(keys.conversation(conv))).get("verified_member")
    sms_before = len(sms_to(fake, CAMILLE.phone))
    stats_before = await store.hgetall(keys.day_stats(paris_day()))
    await call.hang_up()
    stats = await store.hgetall(keys.day_stats(paris_day()))
    assert int(stats["calls_abandoned"]) == int(stats_before.get("calls_abandoned", 0)) + 1
    await asyncio.sleep(2)  # the dispatcher would have sent it by now
    assert len(sms_to(fake, CAMILLE.phone)) == sms_before  # nothing to the number an unknown caller showed
    checked(*call.documents)


@pytest.mark.timeout(180)
async def test_a_callback_dialled_from_the_console_with_no_answer_is_retried_later(
    product: Product, fake: FakeTwilio, store: Redis, browser: Browser
) -> None:
    member_phone = "+33612345678"
    fake.voice.behaviour[member_phone] = "no-answer"
    today = dt.datetime.now(PARIS).date().isoformat()
    async with aiohttp.ClientSession() as session:
        body = {"phone": "06 12 34 56 78", "date": today, "slot": "00:00-23:59", "reason": "remboursement",
                "name": "Paul Martin"}  # fmt: skip
        async with session.post(product.url + "/api/callbacks", json=body) as resp:
            assert resp.status == 201, await resp.text()
            cb_id = (await resp.json())["id"]
    julie = await log_in(browser, product, "julie")
    item = julie.locator(f"#queue li[data-id='{cb_id}']")
    await item.wait_for(timeout=15_000)
    await item.locator("button.cb-take").click()
    await julie.wait_for_selector("#cb-call", timeout=10_000)
    await assert_accessible(julie, "a callback with « Appeler »")
    await julie.click("#cb-call")
    await julie.wait_for_selector("#toast >> text=Votre téléphone sonne", timeout=10_000)
    await until(lambda: any(leg.dialed for leg in fake.voice.legs), "the member's phone dialled")
    leg = next(leg for leg in fake.voice.legs if leg.dialed)
    assert leg.to == AGENT_PHONE and leg.dialed == [(member_phone, "no-answer")]
    assert leg.twiml is not None
    checked(leg.twiml)
    assert f'callerId="{VOICE_NUMBER}"' in leg.twiml  # the member sees the mutuelle's number

    async def recorded() -> dict[str, str]:
        return await store.hgetall(keys.callback(cb_id))

    async def settled() -> bool:
        """The outcome writes the status, then lets go of the holder: both (a loaded machine shows the gap)."""
        cb = await recorded()
        return cb.get("status") == "no_answer" and not cb.get("held_by")

    deadline = time.monotonic() + 15
    while not await settled():
        assert time.monotonic() < deadline, await recorded()
        await asyncio.sleep(0.1)
    cb = await recorded()
    assert cb["attempts"] == "1" and cb.get("held_by", "") == ""
    due = await store.zscore(keys.CALLBACKS_DUE, cb_id)
    assert due is not None and due > time.time() + 25 * 60  # due again in about 30 minutes


@pytest.mark.timeout(180)
async def test_when_the_agents_phone_does_not_answer_the_caller_goes_back_to_the_queue(
    product: Product, fake: FakeTwilio, store: Redis, browser: Browser
) -> None:
    fake.voice.behaviour[AGENT_PHONE] = "no-answer"
    try:
        julie = await log_in(browser, product, "julie")
        call, conv, legs = await press_take_call(julie, fake, product.url)
        await until(lambda: len(fake.voice.legs) > legs and "no-answer" in fake.voice.legs[-1].statuses,
                    "the agent's phone not answering")  # fmt: skip

        async def status() -> str | None:
            return await store.hget(keys.conversation(conv), "status")

        async def requeued() -> bool:
            """Back to « handoff », then back in the queue (two writes: a loaded machine shows the gap)."""
            return await status() == "handoff" and await store.zscore(keys.HANDOFF_QUEUE, conv) is not None

        deadline = time.monotonic() + 10
        while not await requeued():  # waiting again, in its place
            assert time.monotonic() < deadline, await status()
            await asyncio.sleep(0.1)
        await julie.locator(f"#queue li[data-id='{conv}'] button.take-call").wait_for(timeout=10_000)
        await call.hang_up()
        checked(*call.documents, *fake.voice.legs[-1].documents)
    finally:
        fake.voice.behaviour.pop(AGENT_PHONE, None)


@pytest.mark.timeout(180)
async def test_outside_opening_hours_a_request_for_a_human_becomes_a_callback_confirmed_by_sms(
    product: Product, fake: FakeTwilio, store: Redis, rasa_url: str, actions_url: str, redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    # A second product on the same Redis, open one hour a week on another day than today: closed now.
    other_day = "sun" if dt.datetime.now(PARIS).isoweekday() != 7 else "mon"
    tmp = tmp_path_factory.mktemp("voiceclosed")
    env = loopback_env(tmp / "var", fake.base_url, "http://127.0.0.1:9/telegram", "smtp://127.0.0.1:9")
    env.pop("TELEGRAM_TOKEN")
    env.update(RESPONDER="rasa", RASA_URL=rasa_url, ACTIONS_URL=actions_url, REDIS_URL=redis_url,
               TWILIO_VOICE_NUMBER=VOICE_NUMBER, OPENING_HOURS=f"{other_day} 09:00-10:00")  # fmt: skip
    closed = Product(env, tmp / "product.log")
    await closed.start()
    try:
        call = PhoneCall(fake, closed.url, CAMILLE.phone, to=VOICE_NUMBER)
        await call.start()
        sms_before = len(sms_to(fake, CAMILLE.phone))
        said = await call.speak("je veux parler à un conseiller")
        assert "Nos conseillers sont absents pour le moment. Un conseiller vous rappellera " in said
        assert "entre 9 h et 10 h" in said and "Je vous mets en relation" not in said
        assert call.queue is None and call.ended  # not queued: told, then hung up
        conv = (await store.hgetall(keys.call(call.sid)))["conv"]
        cb = await store.hgetall(keys.callback(await store.hget(keys.conversation(conv), "callback_id")))
        assert cb["phone"] == CAMILLE.phone and cb["slot_start"][11:16] == "09:00" and cb["status"] == "pending"
        await until(lambda: len(sms_to(fake, CAMILLE.phone)) > sms_before, "the SMS confirming the callback")
        assert cb["ref"] in sms_to(fake, CAMILLE.phone)[-1]
        await call.completed()
        checked(*call.documents)
    finally:
        assert closed.stop() == 0


@pytest.mark.timeout(240)
async def test_an_agent_without_a_phone_is_sent_to_her_profile_then_takes_the_call(
    product: Product, fake: FakeTwilio, store: Redis, browser: Browser, redis_url: str
) -> None:
    """Issue 22: « Prendre l'appel » without a phone in the profile says so, with a link to « Mon profil »
    (focused); the agent types her number in its French form there, and her next « Prendre l'appel » rings it."""
    await create_user(redis_url, "marc", "Marc", "--skills", "benefits")
    marc = await log_in(browser, product, "marc")
    call, conv, legs = await press_take_call(marc, fake, product.url)
    notice = marc.locator("#no-phone")
    await expect(notice).to_contain_text("Aucun numéro de téléphone dans votre profil")
    assert await marc.evaluate("document.activeElement.id") == "no-phone-link"
    await assert_accessible(marc, "console, « Prendre l'appel » without a phone")
    assert (await store.hgetall(keys.conversation(conv)))["status"] == "handoff"  # not taken: still waiting
    assert len(fake.voice.legs) == legs  # no phone rang
    # The server says the same to a page that did not know (a stale state).
    async with aiohttp.ClientSession() as session:
        cookies = {c["name"]: c["value"] for c in await marc.context.cookies()}
        csrf = await marc.get_attribute("meta[name=csrf-token]", "content")
        async with session.post(product.url + f"/console/api/calls/{conv}/take", json={}, cookies=cookies,
                                headers={"X-CSRF-Token": csrf or "", "Origin": product.url}) as resp:  # fmt: skip
            assert resp.status == 409 and (await resp.json())["error"] == "no_phone"
        # The profile's POST needs the session's CSRF token, like every console POST.
        async with session.post(product.url + "/console/api/profile", json={"phone": "0781234567"}, cookies=cookies,
                                headers={"Origin": product.url}) as resp:  # fmt: skip
            assert resp.status == 403
    assert await store.hget(keys.user("marc"), "phone") == ""

    await marc.keyboard.press("Enter")  # the link
    await marc.wait_for_url(product.url + "/console/profile")
    await marc.fill("#phone", "07 81 23 45 67")
    await marc.keyboard.press("Enter")
    await expect(marc.locator("#phone-status")).to_contain_text("Numéro enregistré : +33 7 81 23 45 67.")
    assert await store.hget(keys.user("marc"), "phone") == "+33781234567"

    await marc.goto(product.url + "/console")
    await marc.wait_for_selector("#live.on", timeout=15_000)
    await marc.locator(f"#queue li[data-id='{conv}'] button.take-call").click()
    await marc.wait_for_selector("#toast >> text=Votre téléphone sonne", timeout=10_000)
    await until(lambda: len(fake.voice.legs) > legs and fake.voice.legs[-1].bridged is call, "Marc's leg bridged")
    leg = fake.voice.legs[-1]
    assert leg.to == "+33781234567" and leg.from_ == VOICE_NUMBER
    await call.end_bridge()
    await fake.voice.end_leg(leg)
    checked(*call.documents, *leg.documents)
    assert not marc.errors  # type: ignore[attr-defined]
