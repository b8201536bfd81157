"""The agents' console in real Chromium against ``run.py serve`` with the real bot: a member's SMS
is handed off, an agent logs in, takes it, answers (seen at the loopback Twilio server), the
member's answer shows up live, the agent undoes the member's linked Telegram account from the record
with the keyboard, the agent closes and the survey's answers are counted on the
supervisor's dashboard; a second agent cannot open the conversation; a POST without the CSRF
token is refused; a conversation given back to the bot gets bot answers again; a callback
request shows up in the queue at its slot."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from playwright.async_api import Browser, Page
from redis.asyncio import Redis

from gateway import keys
from gateway.conversations import paris_day
from gateway.hours import holiday_name
from members import links
from tests.e2e.bot_data import CAMILLE
from tests.e2e.browser import chromium
from tests.e2e.product import ROOT, Product
from tests.e2e.test_bot_e2e import conversation_of, sms_to, turn
from tests.fakes.twilio import FakeTwilio

pytestmark = pytest.mark.browser
PASSWORD = "un-mot-de-passe-assez-long"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


async def create_user(redis_url: str, login: str, first_name: str, *extra: str) -> None:
    """Through the real command, as an administrator would."""
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(ROOT / "run.py"), "create-user", login, "--first-name", first_name, "--password-stdin",
         *extra],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        env={**os.environ, "REDIS_URL": redis_url},
        cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"Utilisateur {login}" in done.stdout


async def arrived(inbox: Callable[[], list[str]], text: str, timeout: float = 15.0) -> None:
    """Wait until an SMS containing ``text`` reached the loopback Twilio server."""
    for _ in range(int(timeout * 10)):
        if any(text in t for t in inbox()):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no SMS containing {text!r}: {inbox()!r}")


async def log_in(browser: Browser, product: Product, login: str) -> Page:
    page = await (await browser.new_context()).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(product.url + "/console")
    assert page.url.endswith("/console/login")
    await page.fill("input[name=login]", login)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_selector("#live.on", timeout=15_000)
    page.errors = errors  # type: ignore[attr-defined]
    return page


async def test_agent_takes_answers_closes_and_the_survey_is_counted(
    bot_product: Product, browser: Browser, fake_twilio: FakeTwilio, redis: Redis, redis_url: str
) -> None:
    await create_user(redis_url, "julie", "Julie", "--skills", "benefits,complaints")
    await create_user(redis_url, "marc", "Marc", "--skills", "benefits")
    await create_user(redis_url, "sophie", "Sophie", "--role", "supervisor")
    julie = await log_in(browser, bot_product, "julie")
    async with aiohttp.ClientSession() as session:
        send, inbox = sms_to(bot_product, fake_twilio, session, CAMILLE.phone)
        handoff = await turn(send, inbox, "je veux parler a un conseiller", "attente")
        assert handoff[-1].startswith("Temps d'attente estimé : environ")  # Julie is online
        conv = (await conversation_of(redis, f"tel:{CAMILLE.phone}", "sms"))["id"]
        # Camille had linked her Telegram chat (she said « oui » to the bot after a code there).
        await redis.hset(keys.contact("c-tg-camille"), mapping={"id": "c-tg-camille"})
        assert await links.link(redis, CAMILLE.number, "c-tg-camille", channel="telegram",
                                address="telegram:5550042", conv_id="conv-tg")  # fmt: skip

        # The queue updates live; Julie takes it and the member learns her first name.
        item = julie.locator(f"#queue li[data-id='{conv}']")
        await item.wait_for(timeout=15_000)
        assert "demande un conseiller" in await item.inner_text()
        await item.locator("button.take").click()
        await julie.wait_for_selector("#reply-text", timeout=15_000)
        assert "Camille Durand" in await julie.inner_text("#fiche")  # the member's record beside the conversation
        await arrived(inbox, "Bonjour, je suis Julie")

        # « Ne plus reconnaître » her Telegram account, with the keyboard, confirmed: a stranger's chat again.
        assert "Comptes reconnus" in await julie.inner_text("#fiche")
        await julie.focus("#fiche button.unlink")
        await julie.keyboard.press("Enter")
        await julie.wait_for_selector("#confirm-yes", timeout=5_000)
        await julie.keyboard.press("Tab")  # from « Annuler » to the confirmation
        await julie.keyboard.press("Enter")
        await julie.wait_for_selector("#toast >> text=n'est plus reconnu", timeout=10_000)
        assert await links.linked_member(redis, "c-tg-camille") is None
        await julie.wait_for_function("!document.querySelector('#fiche button.unlink')", timeout=10_000)

        # A canned answer, edited, goes out by SMS.
        await julie.select_option("#canned", "delai-remboursement")
        await julie.click("#canned-insert")  # choosing alone changes nothing (keyboard users browse the list)
        assert "48 h" in await julie.input_value("#reply-text")
        await julie.fill("#reply-text", "Votre dossier est complet, le virement part demain.")
        before = len(inbox())
        await julie.click("#send")
        for _ in range(100):
            if len(inbox()) > before:
                break
            await asyncio.sleep(0.1)
        assert inbox()[-1] == "Votre dossier est complet, le virement part demain."

        # The member answers: it appears in Julie's console without a reload, and the bot stays silent.
        await send("Merci beaucoup, bonne journée")
        await julie.wait_for_selector("#messages >> text=Merci beaucoup, bonne journée", timeout=15_000)
        assert inbox()[-1] == "Votre dossier est complet, le virement part demain."

        # Marc (same skill) cannot open Julie's conversation, and a POST without the CSRF token is refused.
        marc = await log_in(browser, bot_product, "marc")
        assert await marc.locator(f"#queue li[data-id='{conv}']").count() == 0
        status = await marc.evaluate(f"fetch('/console/api/conversations/{conv}').then(r => r.status)")
        assert status == 403
        no_csrf = await julie.evaluate(
            f"fetch('/console/api/conversations/{conv}/close', {{method: 'POST', headers: {{'Content-Type': "
            "'application/json'}, body: '{}'}).then(async r => [r.status, (await r.json()).error])"
        )
        assert no_csrf == [403, "csrf"]
        assert (await redis.hgetall(keys.conversation(conv)))["status"] == "assigned"

        # Julie closes (and confirms); the survey goes out on SMS and the member's answers are counted.
        await julie.click("#close")
        await julie.click("#confirm-yes")
        await julie.wait_for_selector("#toast >> text=questionnaire envoyé", timeout=10_000)
        await turn(send, inbox, "5", "0 à 10")
        [thanks] = await turn(send, inbox, "10", "Merci pour vos réponses")
        assert thanks.startswith("Merci pour vos réponses")
    record = await redis.hgetall(keys.conversation(conv))
    assert (record["status"], record["csat"], record["nps"]) == ("closed", "5", "10")

    sophie = await log_in(browser, bot_product, "sophie")
    assert sophie.url.endswith("/console/supervisor")
    today = paris_day()  # the console counts Europe/Paris days (CI at 23:xx UTC saw yesterday's empty row)
    row = sophie.locator(f"#days tr:has(time[datetime='{today}'])")  # shown as 07/12/2026, French
    await row.wait_for(timeout=10_000)
    assert await row.locator("td").first.inner_text() == "/".join(reversed(today.split("-")))
    cells = await row.locator("td").all_inner_texts()
    # day, conversations, handed off, queue peak, agents, picked, service level, answer rate, complaints in time,
    # satisfaction, NPS, bot containment
    assert cells[2:8] == ["1", "1", "3", "1", "100 %", "100 %"] and cells[9:11] == ["5", "100"]
    assert await sophie.locator("#chart svg rect").count() == 14
    for page in (julie, marc, sophie):
        assert page.errors == []  # type: ignore[attr-defined]


async def test_given_back_to_the_bot_and_a_callback_at_its_slot(
    bot_product: Product, browser: Browser, fake_twilio: FakeTwilio, redis: Redis, redis_url: str
) -> None:
    await create_user(redis_url, "julie", "Julie", "--skills", "benefits")
    julie = await log_in(browser, bot_product, "julie")
    async with aiohttp.ClientSession() as session:
        send, inbox = sms_to(bot_product, fake_twilio, session, CAMILLE.phone)
        await turn(send, inbox, "ou en est ma carte", "date de naissance")  # a form is active in the bot
        await turn(send, inbox, "je veux un conseiller", "attente")
        conv = (await conversation_of(redis, f"tel:{CAMILLE.phone}", "sms"))["id"]
        await julie.locator(f"#queue li[data-id='{conv}'] button.take").click()
        await julie.wait_for_selector("#give-back", timeout=15_000)
        await julie.click("#give-back")
        await julie.wait_for_selector("#toast >> text=rendue à l'assistant", timeout=10_000)
        await arrived(inbox, "assistant automatique")
        # The bot answers again, from a clean state: a greeting, not the birth-date question left over.
        [hello] = await turn(send, inbox, "bonjour", "Bonjour")
        assert hello.startswith("Bonjour ! Je suis l'assistant")
        assert (await redis.hgetall(keys.conversation(conv)))["status"] == "open"

        # A callback request for a coming slot is not in the queue yet...
        day = dt.date.today() + dt.timedelta(days=1)
        while day.weekday() >= 5 or holiday_name(day):  # the callback form refuses public holidays
            day += dt.timedelta(days=1)
        payload = {"phone": "06 12 34 56 78", "date": day.isoformat(), "slot": "14:00-18:00", "reason": "remboursement"}
        async with session.post(f"{bot_product.url}/api/callbacks", json=payload) as resp:
            assert resp.status == 201
            cb_id = (await resp.json())["id"]
    await julie.reload()
    await julie.wait_for_selector("#live.on", timeout=15_000)
    assert await julie.locator(f"#queue li[data-id='{cb_id}']").count() == 0
    # ...and shows up when its slot comes (the clock moved forward: its due time is now).
    await redis.zadd(keys.CALLBACKS_DUE, {cb_id: int(dt.datetime.now().timestamp())})
    row = julie.locator(f"#queue li[data-id='{cb_id}']")
    await row.wait_for(timeout=15_000)
    assert "Rappel 14:00–18:00" in await row.inner_text()
    await row.locator("button.cb-take").click()  # taken first (exclusive), then the outcome
    await julie.click("#cb-done")
    await julie.wait_for_selector("#toast >> text=Rappel enregistré", timeout=10_000)
    assert (await redis.hgetall(keys.callback(cb_id)))["status"] == "done"
