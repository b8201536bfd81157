"""Accessibility of the member's web chat and the agents' console (issue 18), in real Chromium against
one ``run.py serve`` with the real bot for the whole module: axe-core finds nothing on the demo page
with the chat open, the console's sign-in, a queue with waiting conversations, a conversation taken,
the 403 page and the supervisor's page; a member and an agent do their whole task with the keyboard
alone (Tab, Shift+Tab, Enter, Space, Escape, arrow keys in a list; no mouse)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect
from redis.asyncio import Redis

from gateway import keys
from gateway.redis_client import connect
from members.records import Complaint, MemberStore
from tests.e2e.accessibility import assert_accessible
from tests.e2e.bot_data import CAMILLE, day, seed
from tests.e2e.browser import CHROMIUM_ARGS
from tests.e2e.product import ACCOUNT_SID, AUTH_TOKEN, ROOT, TELEGRAM_TOKEN, Product, loopback_env
from tests.e2e.test_bot_e2e import conversation_of, sms_to, turn
from tests.fakes.smtp import SmtpSink
from tests.fakes.telegram import FakeTelegram
from tests.fakes.twilio import FakeTwilio

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]  # the first test starts Rasa and the product
PASSWORD = "un-mot-de-passe-assez-long"
LATE = Complaint("REC-2026-000099", CAMILLE.number, day(-14), False, day(-4), "open", "Remboursement oublié", "")


@dataclass
class Setup:
    product: Product
    browser: Browser
    redis: Redis
    twilio: FakeTwilio


def create_user(redis_url: str, login: str, first_name: str, *extra: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "create-user", login, "--first-name", first_name, "--password-stdin",
         *extra],
        input=PASSWORD + "\n", capture_output=True, text=True, env={**os.environ, "REDIS_URL": redis_url}, cwd=ROOT,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
async def setup(
    tmp_path_factory: pytest.TempPathFactory, rasa_url: str, actions_url: str, redis_url: str
) -> AsyncIterator[Setup]:
    """One product (with the bot) and one browser for every scenario of the module."""
    redis = connect(redis_url)
    await redis.flushall()
    await seed(redis)
    async with redis.pipeline(transaction=False) as pipe:
        MemberStore(redis).write_record(pipe, LATE)  # four days past its due date
        await pipe.execute()
    await asyncio.to_thread(create_user, redis_url, "julie", "Julie", "--title", "conseillère", "--skills",
                            "benefits,complaints")  # fmt: skip
    await asyncio.to_thread(create_user, redis_url, "sophie", "Sophie", "--role", "supervisor")
    tmp = tmp_path_factory.mktemp("a11y")
    async with (
        FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as twilio,
        FakeTelegram(TELEGRAM_TOKEN) as telegram,
        SmtpSink() as smtp,
        async_playwright() as p,
    ):
        env = loopback_env(tmp / "var", twilio.base_url, telegram.base_url, smtp.url)
        product = Product(
            {**env, "RESPONDER": "rasa", "RASA_URL": rasa_url, "ACTIONS_URL": actions_url, "REDIS_URL": redis_url},
            tmp / "product.log",
        )
        await product.start()
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield Setup(product, browser, redis, twilio)
        finally:
            await browser.close()
            assert product.stop() == 0
            await redis.aclose()


async def new_page(setup: Setup) -> Page:
    context = await setup.browser.new_context(viewport={"width": 1280, "height": 640})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors  # type: ignore[attr-defined]
    return page


async def focused(page: Page, selector: str) -> bool:
    return bool(await page.evaluate("(s) => !!document.activeElement && document.activeElement.matches(s)", selector))


async def tab_to(page: Page, selector: str, *, back: bool = False, limit: int = 60) -> None:
    """Press Tab (or Shift+Tab) until the keyboard focus is on ``selector``, as a keyboard user would."""
    for _ in range(limit):
        if await focused(page, selector):
            return
        await page.keyboard.press("Shift+Tab" if back else "Tab")
    where = await page.evaluate("document.activeElement && document.activeElement.outerHTML.slice(0, 120)")
    raise AssertionError(f"{selector} not reached with {'Shift+Tab' if back else 'Tab'}; focus on {where}")


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 15.0) -> None:
    """Wait on a condition with a deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not seen in {timeout:.0f} s: {what}")


async def open_chat_with_keyboard(page: Page) -> None:
    await tab_to(page, ".mwc-toggle")
    await page.keyboard.press("Enter")
    assert await focused(page, ".mwc-input")  # the panel opens on the message field
    await page.wait_for_selector(".mwc-root[data-connected=true]", timeout=15_000)


async def test_member_walk_on_the_demo_page(setup: Setup) -> None:
    page = await new_page(setup)
    await page.goto(setup.product.url + "/")
    await open_chat_with_keyboard(page)
    await assert_accessible(page, "demo page, chat open")

    await page.keyboard.type("bonjour")
    await page.keyboard.press("Enter")
    answer = page.locator(".mwc-msg.mwc-bot", has_text="Je suis l'assistant")
    await answer.wait_for(timeout=15_000)
    assert await answer.locator(".mwc-speaker").inner_text() == "Assistant"
    assert await page.locator(".mwc-member .mwc-speaker").first.inner_text() == "Vous"
    # Read out once through the live region, labelled with its speaker.
    await expect(page.locator(".mwc-sr")).to_contain_text("Assistant : Bonjour ! Je suis l'assistant", timeout=5_000)
    await assert_accessible(page, "demo page, chat answered")

    await page.keyboard.press("Escape")
    assert await page.locator(".mwc-panel").is_hidden()
    assert await focused(page, ".mwc-toggle")  # back on the button that opened it
    assert await page.locator(".mwc-toggle").get_attribute("aria-expanded") == "false"

    # After a reload the history is shown again but not read out again.
    await page.reload()
    await open_chat_with_keyboard(page)
    await answer.wait_for(timeout=15_000)
    assert await page.locator(".mwc-sr").inner_text() == ""
    assert page.errors == []  # type: ignore[attr-defined]


async def test_agent_keyboard_walk_and_every_console_page(setup: Setup) -> None:
    redis, product = setup.redis, setup.product
    async with aiohttp.ClientSession() as session:
        # Camille writes by SMS long enough for the history to scroll, then asks for an agent.
        send, inbox = sms_to(product, setup.twilio, session, CAMILLE.phone)
        await turn(send, inbox, "bonjour", "Bonjour")
        await turn(send, inbox, "ou en est ma carte de tiers payant", "date de naissance")
        await turn(send, inbox, "12 mars 1975", "carte")
        await turn(send, inbox, "et mon remboursement de lunettes ?", "lunettes")
        await turn(send, inbox, "je veux parler a un conseiller", "en relation avec un conseiller")
        sms_conv = (await conversation_of(redis, f"tel:{CAMILLE.phone}", "sms"))["id"]

        # A member on the web chat asks for an agent too.
        member = await new_page(setup)
        await member.goto(product.url + "/")
        await open_chat_with_keyboard(member)
        await member.keyboard.type("je veux parler a un conseiller")
        await member.keyboard.press("Enter")
        await until(lambda: _queued(redis, 2), "two handoffs")

        # The sign-in, with the keyboard: the login field has the focus.
        julie = await new_page(setup)
        await julie.goto(product.url + "/console")
        await assert_accessible(julie, "console login")
        assert await focused(julie, "input[name=login]")
        await julie.keyboard.type("julie")
        await julie.keyboard.press("Tab")
        await julie.keyboard.type(PASSWORD)
        await julie.keyboard.press("Enter")
        await julie.wait_for_selector("#live.on", timeout=15_000)
        await expect(julie.locator("#queue > li")).to_have_count(2, timeout=15_000)
        # The overdue complaint comes first, said in words.
        first_complaint = julie.locator("#complaints > li").first
        await expect(first_complaint).to_contain_text("En retard de 4 jours", timeout=10_000)
        await expect(first_complaint).to_contain_text(LATE.id)
        await assert_accessible(julie, "agent's queue with waiting conversations")

        # Take the next one (Camille's, the older): the history ends on the member's last message, in view.
        await tab_to(julie, "#take-next")
        await julie.keyboard.press("Enter")
        await julie.wait_for_selector("#reply-text", timeout=15_000)
        assert await focused(julie, "#conv-title")
        last_in = julie.locator("#messages li.in").last
        await expect(last_in).to_contain_text("je veux parler a un conseiller")
        await expect(last_in).to_be_in_viewport()
        await expect(julie.locator("#messages li").last).to_be_in_viewport()
        assert await julie.evaluate("(() => { const l = document.getElementById('messages'); "
                                    "return l.scrollHeight > l.clientHeight + 50; })()")  # it did scroll  # fmt: skip
        greeting = julie.locator("#messages li.agent").last
        await expect(greeting.locator(".who")).to_have_text("Julie, conseillère")
        await assert_accessible(julie, "conversation taken")

        # Reply with the keyboard.
        await tab_to(julie, "#reply-text")
        await julie.keyboard.type("Je regarde votre dossier tout de suite.")
        await tab_to(julie, "#send")
        await julie.keyboard.press("Enter")
        await until(lambda: _has(inbox, "Je regarde votre dossier tout de suite."), "the reply by SMS")

        # A canned answer: choose it with the arrow keys (nothing happens yet), insert it, send it.
        await tab_to(julie, "#canned", back=True)
        await julie.keyboard.press("ArrowDown")
        assert await julie.input_value("#reply-text") == ""
        await tab_to(julie, "#canned-insert")
        await julie.keyboard.press("Space")
        assert await focused(julie, "#reply-text")
        canned = await julie.input_value("#reply-text")
        assert canned
        await tab_to(julie, "#send")
        await julie.keyboard.press("Enter")
        await until(lambda: _has(inbox, canned), "the canned answer by SMS")

        # The web-chat member's turn: taken, answered; the member sees Julie named, not « Assistant ».
        await tab_to(julie, "#take-next", back=True)
        await julie.keyboard.press("Enter")
        await expect(julie.locator("#conv-title")).to_contain_text("Chat web", timeout=15_000)
        await tab_to(julie, "#reply-text")
        await julie.keyboard.type("Bonjour, que puis-je pour vous ?")
        await julie.keyboard.press("Tab")
        await julie.keyboard.press("Enter")
        said = member.locator(".mwc-msg.mwc-agent", has_text="que puis-je pour vous")
        await said.wait_for(timeout=15_000)
        assert await said.locator(".mwc-speaker").inner_text() == "Julie, conseillère"
        await expect(member.locator(".mwc-sr")).to_have_text("Julie, conseillère : Bonjour, que puis-je pour vous ?")

        # After a reload, Camille's conversation is reopened from « Mes conversations ».
        await julie.reload()
        await julie.wait_for_selector("#live.on", timeout=15_000)
        await tab_to(julie, f"#mine button[data-key='m:{sms_conv}']")
        await julie.keyboard.press("Enter")
        await expect(julie.locator("#conv-title")).to_contain_text("SMS", timeout=10_000)
        assert await focused(julie, "#conv-title")

        # Close, which asks first: Escape cancels (focus back on the button), then confirm.
        await tab_to(julie, "#close")
        await julie.keyboard.press("Enter")
        dialog = julie.locator("dialog#confirm")
        await expect(dialog).to_be_visible()
        assert await focused(julie, "#confirm-no")
        await assert_accessible(julie, "close confirmation")
        await julie.keyboard.press("Escape")
        await expect(dialog).to_have_count(0)
        assert await focused(julie, "#close")
        assert (await redis.hgetall(keys.conversation(sms_conv)))["status"] == "assigned"
        await julie.keyboard.press("Enter")
        await expect(dialog).to_be_visible()
        await julie.keyboard.press("Tab")
        assert await focused(julie, "#confirm-yes")
        await julie.keyboard.press("Enter")
        await julie.wait_for_selector("#toast >> text=questionnaire envoyé", timeout=10_000)
        await until(lambda: _has(inbox, "de 1 (pas du tout) à 5"), "the survey by SMS")
        assert (await redis.hgetall(keys.conversation(sms_conv)))["status"] == "closed"

        # « Répondue » on the overdue complaint asks too; confirmed with the keyboard, the date is recorded.
        await tab_to(julie, f"#complaints button[data-key='c:{LATE.id}']", back=True)
        await julie.keyboard.press("Enter")
        await expect(dialog).to_contain_text(f"Marquer la réclamation {LATE.id} comme répondue")
        await julie.keyboard.press("Tab")
        await julie.keyboard.press("Space")
        await julie.wait_for_selector("#toast >> text=Réclamation marquée répondue", timeout=10_000)
        [record] = [r for r in await MemberStore(redis).records(CAMILLE.number, Complaint.RECORD) if r["id"] == LATE.id]
        assert record["status"] == "answered" and record["answered_date"]

    # The supervisor's page is not Julie's: a 403 in the console's layout, with the way back.
    response = await julie.goto(product.url + "/console/supervisor")
    assert response is not None and response.status == 403
    await expect(julie.locator("h1")).to_have_text("Accès réservé")
    await assert_accessible(julie, "403 page")
    await tab_to(julie, "a.button")
    await julie.keyboard.press("Enter")
    await julie.wait_for_url(product.url + "/console")

    sophie = await new_page(setup)
    await sophie.goto(product.url + "/console/login")
    await sophie.fill("input[name=login]", "sophie")
    await sophie.fill("input[name=password]", PASSWORD)
    await sophie.keyboard.press("Enter")
    await sophie.wait_for_selector("#days tbody tr", timeout=15_000)
    await expect(sophie.locator("#now")).to_contain_text("En attente, Prestations")
    await assert_accessible(sophie, "supervisor page")
    for page in (member, julie, sophie):
        assert page.errors == []  # type: ignore[attr-defined]


async def _queued(redis: Redis, n: int) -> bool:
    return int(await redis.zcard(keys.HANDOFF_QUEUE)) >= n


async def _has(inbox: Callable[[], list[str]], text: str) -> bool:
    return any(text in t for t in inbox())


async def test_my_profile_with_the_keyboard(setup: Setup) -> None:
    """« Mon profil » (issue 22): reached from the console's header, the phone changed with the keyboard alone;
    a refused number is said beside the field, which keeps the focus; axe-core finds nothing in either state."""
    page = await new_page(setup)
    await page.goto(setup.product.url + "/console/login")
    await page.fill("input[name=login]", "julie")
    await page.fill("input[name=password]", PASSWORD)
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#live.on", timeout=15_000)
    await tab_to(page, "#profile-link")
    await page.keyboard.press("Enter")
    await page.wait_for_url(setup.product.url + "/console/profile")
    await expect(page.locator("h1")).to_have_text("Mon profil")
    await expect(page.locator("#phone-status")).to_contain_text("Aucun numéro enregistré")
    await assert_accessible(page, "my profile")

    await tab_to(page, "#phone")
    await page.keyboard.type("06 12")
    await page.keyboard.press("Enter")
    error = page.locator("#phone-error")
    await expect(error).to_contain_text("Numéro de téléphone invalide")
    assert await page.get_attribute("#phone", "aria-invalid") == "true"
    assert await focused(page, "#phone")  # back on the field, whose description now says why
    assert "phone-error" in (await page.get_attribute("#phone", "aria-describedby") or "")
    await assert_accessible(page, "my profile, a number refused")

    await page.keyboard.press("Control+A")
    await page.keyboard.type("06 12 34 56 78")
    await tab_to(page, "#phone-save")
    await page.keyboard.press("Space")
    await expect(page.locator("#phone-status")).to_have_text(
        "Numéro enregistré : +33 6 12 34 56 78. Vos appels sonneront sur ce téléphone."
    )
    assert await error.is_hidden() and await page.get_attribute("#phone", "aria-invalid") is None
    assert await page.input_value("#phone") == "+33 6 12 34 56 78"
    assert await setup.redis.hget(keys.user("julie"), "phone") == "+33612345678"
    await assert_accessible(page, "my profile, number saved")

    # Back to the console with the keyboard.
    await tab_to(page, "nav a", back=True)
    await page.keyboard.press("Enter")
    await page.wait_for_url(setup.product.url + "/console")
    assert page.errors == []  # type: ignore[attr-defined]

    # Without the page's script: a plain form post (its CSRF token in a hidden field), the same messages.
    context = await setup.browser.new_context(java_script_enabled=False)
    bare = await context.new_page()
    await bare.goto(setup.product.url + "/console/login")
    await bare.fill("input[name=login]", "julie")
    await bare.fill("input[name=password]", PASSWORD)
    await bare.keyboard.press("Enter")
    await bare.wait_for_url(setup.product.url + "/console")
    await bare.goto(setup.product.url + "/console/profile")
    await bare.fill("#phone", "+33 6 12")
    await bare.keyboard.press("Enter")
    await expect(bare.locator("#phone-error")).to_contain_text("Numéro de téléphone invalide")
    assert await bare.get_attribute("#phone", "aria-invalid") == "true"
    assert await bare.input_value("#phone") == "+33 6 12"  # what was typed is kept
    assert await setup.redis.hget(keys.user("julie"), "phone") == "+33612345678"
    await bare.fill("#phone", "")
    await bare.keyboard.press("Enter")
    await expect(bare.locator("#phone-status")).to_have_text("Numéro retiré : vous ne pouvez plus prendre d'appel.")
    assert "phone=" not in bare.url  # never in an address
    assert await setup.redis.hget(keys.user("julie"), "phone") == ""  # as the other scenarios expect her
    await context.close()
