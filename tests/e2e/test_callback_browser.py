"""Callbacks end to end in real Chromium against ``run.py serve``: a member books a callback on
/callback (one mistake first: the error beside its field, focus on it, what was typed kept), gets the
short reference on the page and by SMS; an agent, with the keyboard only, opens « Rappels », sees
the name and the number as a tel: link, takes the callback, records « pas de réponse », and it is
due again 30 minutes later. axe-core finds nothing on each page state on the way."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import holidays
import pytest
from playwright.async_api import Browser, Page
from redis.asyncio import Redis

from gateway import keys
from gateway.redis_client import connect
from tests.e2e.accessibility import assert_accessible
from tests.e2e.browser import chromium
from tests.e2e.product import ACCOUNT_SID, AUTH_TOKEN, OUR_NUMBER, Product
from tests.e2e.test_console_browser import PASSWORD, create_user
from tests.fakes.twilio import FakeTwilio

pytestmark = [pytest.mark.browser, pytest.mark.e2e]
PARIS = ZoneInfo("Europe/Paris")
PHONE = "+33612345678"


@pytest.fixture(scope="module")
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
        yield fake


@pytest.fixture(scope="module")
async def product(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str, twilio: FakeTwilio
) -> AsyncIterator[Product]:
    """One product for the module, on the session's Redis (emptied first), SMS to the loopback Twilio."""
    client = connect(redis_url)
    await client.flushall()
    await client.aclose()
    os.environ.pop("REDIS_URL", None)
    var = tmp_path_factory.mktemp("callback-product")
    env = {
        "VAR_DIR": str(var / "var"),
        "REDIS_URL": redis_url,
        "RESPONDER": "ack",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_FROM": OUR_NUMBER,
        "TWILIO_API_BASE": twilio.base_url,
        "CALLBACK_BURST": "100000",
        "CALLBACK_INVALID_BURST": "100000",
    }
    running = Product(env, Path(var) / "product.log")
    await running.start()
    yield running
    assert running.stop() == 0


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


def next_open_weekday() -> str:
    """Tomorrow or later, Monday to Friday, not a public holiday (asked of the holidays package directly)."""
    day = dt.date.today() + dt.timedelta(days=1)
    while day.weekday() >= 5 or day in holidays.country_holidays("FR", years=day.year):
        day += dt.timedelta(days=1)
    return day.isoformat()


async def focused(page: Page) -> str:
    return str(await page.evaluate("document.activeElement ? document.activeElement.id : ''"))


async def tab_to(page: Page, selector: str, limit: int = 120) -> None:
    """Press Tab until the focused element matches ``selector``, as a keyboard user would."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        if await page.evaluate("(s) => !!document.activeElement && document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"Tab never reached {selector}")


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not seen in {timeout:.0f} s: {what}")


async def test_a_member_books_a_callback_and_an_agent_returns_it_with_the_keyboard(
    product: Product, browser: Browser, twilio: FakeTwilio, redis_url: str
) -> None:
    redis: Redis = connect(redis_url)
    member = await (await browser.new_context()).new_page()
    errors: list[str] = []
    member.on("pageerror", lambda exc: errors.append(str(exc)))

    # The empty form.
    await member.goto(product.url + "/callback")
    await assert_accessible(member, "callback form")
    day = next_open_weekday()
    await member.fill("#phone", "06 12")  # a mistake
    await member.fill("#date", day)
    await member.select_option("#slot", "14:00-18:00")
    await member.select_option("#reason", "remboursement")
    await member.fill("#name", "Camille Durand")
    await member.fill("#comment", "Plutôt en fin d'après-midi")
    await member.click("button[type=submit]")

    # The error is beside its field, the field says so, focus is on it, nothing typed is lost.
    await member.wait_for_selector("#phone-error")
    assert "n'est pas un numéro de téléphone français valide" in await member.inner_text("#phone-error")
    phone = member.locator("#phone")
    assert await phone.get_attribute("aria-invalid") == "true"
    assert "phone-error" in (await phone.get_attribute("aria-describedby") or "").split()
    assert await focused(member) == "phone"
    assert await member.locator("#date").input_value() == day and await member.input_value("#name") == "Camille Durand"
    assert await member.input_value("#comment") == "Plutôt en fin d'après-midi"
    assert await member.locator("#slot").input_value() == "14:00-18:00"
    await assert_accessible(member, "callback form with an error")

    await member.fill("#phone", "06 12 34 56 78")
    await member.click("button[type=submit]")
    await member.wait_for_selector("#reference")
    reference = await member.inner_text("#reference")
    assert re.fullmatch(r"RAP-[34679ACDEFGHJKMNPQRTVWXY]{4}", reference), reference
    assert "Camille" not in await member.inner_text("main")  # the page says when and what, nothing else
    await assert_accessible(member, "callback confirmation")
    sms = await twilio.wait_for(1, timeout=15)
    assert sms[0].to == PHONE and reference in sms[0].body and "entre 14 h et 18 h" in sms[0].body
    cb_id = str(await redis.get(keys.callback_ref(reference)))
    assert (await redis.hgetall(keys.callback(cb_id)))["name"] == "Camille Durand"

    # Its slot comes (the clock moved forward: its due time is now).
    await redis.zadd(keys.CALLBACKS_DUE, {cb_id: int(time.time())})

    # The agent, keyboard only: sign in, « Rappels », take it, « pas de réponse ».
    await create_user(redis_url, "julie", "Julie", "--skills", "benefits")
    agent = await (await browser.new_context()).new_page()
    agent.on("pageerror", lambda exc: errors.append(str(exc)))
    await agent.goto(product.url + "/console")
    await agent.wait_for_function("document.activeElement && document.activeElement.name === 'login'")
    await agent.keyboard.type("julie")  # the login field has the focus (autofocus)
    await agent.keyboard.press("Tab")
    await agent.keyboard.type(PASSWORD)
    await agent.keyboard.press("Enter")
    await agent.wait_for_selector("#live.on", timeout=15_000)
    row = agent.locator(f"#queue li[data-id='{cb_id}']")
    await row.wait_for(timeout=15_000)
    text = await row.inner_text()
    assert "Camille Durand" in text and "Remboursement" in text and "Plutôt en fin d'après-midi" in text
    assert await row.locator(f"a[href='tel:{PHONE}']").inner_text() == "06 12 34 56 78"
    await assert_accessible(agent, "agent's queue with a callback")

    await tab_to(agent, "#show-rappels")
    await agent.keyboard.press("Enter")
    entry = agent.locator(f".rappels li[data-id='{cb_id}']")
    await entry.wait_for(timeout=10_000)
    assert "Camille Durand" in await entry.inner_text()
    assert await entry.locator(f"a[href='tel:{PHONE}']").count() == 1
    assert await focused(agent) == "rappels-title"
    await assert_accessible(agent, "Rappels view")

    await tab_to(agent, f"#queue li[data-id='{cb_id}'] button.cb-take")
    await agent.keyboard.press("Space")
    await agent.wait_for_selector("#cb-status >> text=Vous avez pris ce rappel.", timeout=10_000)
    held = await redis.hgetall(keys.callback(cb_id))
    assert (held["status"], held["held_by"]) == ("in_progress", "julie")
    assert await agent.locator(f"#detail a#cb-phone[href='tel:{PHONE}']").count() == 1
    assert "Plutôt en fin d'après-midi" in await agent.inner_text("#detail")
    await assert_accessible(agent, "callback taken")

    await tab_to(agent, "#cb-no-answer")
    before = time.time()
    await agent.keyboard.press("Enter")
    await agent.wait_for_selector("#toast >> text=pas de réponse", timeout=10_000)
    after = time.time()
    due = await redis.zscore(keys.CALLBACKS_DUE, cb_id)
    assert due is not None and before + 1800 - 1 <= due <= after + 1800 + 1  # due again 30 minutes later
    record = await redis.hgetall(keys.callback(cb_id))
    assert (record["status"], record["attempts"], "held_by" in record) == ("no_answer", "1", False)
    # The agent sees the new due time, and the callback has left the queue until then.
    shown = dt.datetime.fromtimestamp(due, PARIS).strftime("%H h %M")
    await agent.wait_for_selector(f"#cb-due >> text=à partir de {shown}", timeout=10_000)
    await until(lambda: _absent(agent, cb_id), "the callback left the queue")
    assert errors == []
    await redis.aclose()


async def _absent(page: Page, cb_id: str) -> bool:
    return await page.locator(f"#queue li[data-id='{cb_id}']").count() == 0
