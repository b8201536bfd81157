"""The strict Content-Security-Policy breaks no page: real Chromium uses every HTML page of
``run.py serve`` as a person would (the demo page and its chat, the callback form, the console's login,
queue and dashboard, the campaign console up to a finished campaign's progress bar, the unsubscribe
page, an error page) and no ``securitypolicyviolation`` fires. Both WebSockets connect under
``connect-src 'self'`` (no bare ``ws:``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from collections.abc import Callable

import pytest
from playwright.async_api import BrowserContext, Page, async_playwright

from campaigns.rules import PARIS, is_public_holiday
from gateway import unsubscribe
from gateway.hours import holiday_name
from gateway.responders import ACK_TEXT
from members.records import Member, MemberStore
from tests.e2e.browser import CHROMIUM_ARGS
from tests.e2e.product import ROOT, Product
from tests.e2e.test_sms_e2e import redis_of

pytestmark = pytest.mark.browser
PASSWORD = "un-mot-de-passe-assez-long"
SECRET = "csp-test-secret-key"

# Runs in every document before its own scripts: report each violation to the test.
WATCH_CSP = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.reportCspViolation(`${location.pathname}: ${e.violatedDirective} blocked ${e.blockedURI || "inline"}`);
});
"""


async def watched(context: BrowserContext, violations: list[str]) -> Page:
    page = await context.new_page()
    page.on("pageerror", lambda exc: violations.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda m: violations.append(f"console: {m.text}") if "Content Security Policy" in m.text else None,
    )
    return page


def create_user(product: Product, login: str, role: str, *extra: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "create-user", login, "--first-name", login.title(), "--role", role,
         "--password-stdin", *extra],
        input=PASSWORD + "\n", capture_output=True, text=True, env={**os.environ, **product.env, "REDIS_URL": ""},
        cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


async def log_in(page: Page, product: Product, login: str, landing: str) -> None:
    await page.goto(product.url + "/console/login")
    await page.fill("input[name=login]", login)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"**{landing}")


async def test_no_page_needs_more_than_the_policy_allows(make_product: Callable[..., Product]) -> None:
    product = make_product(SECRET_KEY=SECRET, EMAIL_RATE_PER_S="200", SMS_RATE_PER_S="200")
    await product.start()
    redis = await redis_of(product)
    store = MemberStore(redis)
    async with redis.pipeline(transaction=False) as pipe:
        for i in range(1, 4):
            store.write(pipe, Member(f"M8{i:06d}", "Inès", f"Garnier{i}", "1979-02-02", f"+3346572{i:04d}",
                                     f"g{i}@example.fr", "renfort", "Guyane", "famille", "48.00", "2027-03-10"))  # fmt: skip
        await pipe.execute()
    await redis.aclose()
    for login, role, extra in (("julie", "agent", ("--skills", "benefits")), ("sophie", "supervisor", ()),
                               ("claire", "communications", ())):  # fmt: skip
        await asyncio.to_thread(create_user, product, login, role, *extra)
    violations: list[str] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)

        async def fresh() -> Page:
            context = await browser.new_context()
            await context.expose_function("reportCspViolation", lambda text: violations.append(text))
            await context.add_init_script(WATCH_CSP)
            return await watched(context, violations)

        # The demo page and its chat: the socket opens, a message goes and is answered.
        page = await fresh()
        await page.goto(product.url + "/")
        await page.click(".mwc-toggle")
        await page.wait_for_selector(".mwc-root[data-connected=true]", timeout=15_000)
        await page.fill(".mwc-input", "Bonjour, une question sur ma carte")
        await page.click(".mwc-send")
        await page.wait_for_selector(f".mwc-bot >> text={ACK_TEXT}", timeout=15_000)
        assert await page.evaluate("getComputedStyle(document.querySelector('.mwc-toggle')).position") != ""

        # The callback form: refused once, then recorded.
        await page.click("text=Être rappelé par un conseiller")
        await page.wait_for_url("**/callback")
        await page.fill("#phone", "123")
        await page.fill("#date", dt.date.today().isoformat())
        await page.evaluate("document.querySelector('#phone').removeAttribute('required')")
        await page.click("button[type=submit]")
        await page.wait_for_selector("[role=alert]")
        day = dt.date.today() + dt.timedelta(days=1)
        while day.weekday() >= 5 or holiday_name(day):  # the callback form refuses public holidays
            day += dt.timedelta(days=1)
        await page.fill("#phone", "06 12 34 56 78")
        await page.fill("#date", day.isoformat())
        await page.click("button[type=submit]")
        await page.wait_for_selector("text=Votre demande de rappel est enregistrée")
        # The stylesheet applied (style-src 'self'): the page is not unstyled.
        assert await page.evaluate("getComputedStyle(document.querySelector('main')).maxWidth") == "736px"

        # An error page and the unsubscribe pages.
        await page.goto(product.url + "/nulle-part")
        await page.goto(product.url + "/desabonnement/" + unsubscribe.token(SECRET, "M8000001"))
        await page.click("button[type=submit]")
        await page.wait_for_selector("text=C'est fait")
        await page.goto(product.url + "/desabonnement/jeton-faux")
        await page.wait_for_selector("text=Lien de désabonnement invalide")

        # The console: a refused login, then the agent's queue live over its socket.
        page = await fresh()
        await page.goto(product.url + "/console/login")
        await page.fill("input[name=login]", "julie")
        await page.fill("input[name=password]", "pas le bon")
        await page.click("button[type=submit]")
        await page.wait_for_selector(".error >> text=Identifiant ou mot de passe incorrect")
        await log_in(page, product, "julie", "/console")
        await page.wait_for_selector("#live.on", timeout=15_000)
        await page.wait_for_selector("#complaints")

        # The supervisor's dashboard: chart, table, dead letters.
        page = await fresh()
        await log_in(page, product, "sophie", "/console/supervisor")
        await page.wait_for_selector("#live.on", timeout=15_000)
        await page.wait_for_selector("#chart svg rect", state="attached")
        await page.wait_for_selector("#dead tbody tr")

        # The campaign console, through to a finished campaign's progress bar (a style set by script).
        page = await fresh()
        page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))
        await log_in(page, product, "claire", "/console/campaigns")
        await page.click("#new")
        await page.select_option("select[name=kind]", "contribution_change")
        await page.fill(
            "input[name=effective_date]", (dt.date.today() + dt.timedelta(days=70)).replace(day=1).isoformat()
        )
        await page.fill("input[name=regions]", "Guyane")
        await page.fill("textarea[name=values]", "new_contribution = 50,00")  # count refuses members without one
        await page.select_option("select[name=channels]", "sms,email")
        await page.fill("input[name=start]", "00:00")
        await page.fill("input[name=end]", "23:59")
        await page.click("#create button[type=submit]")
        await page.wait_for_selector("#count", timeout=10_000)
        await page.click("#count")
        await page.wait_for_selector("#count-result")
        await page.click("#preview")
        await page.wait_for_selector(".preview h4")
        today = dt.datetime.now(PARIS).date()
        if today.isoweekday() != 7 and not is_public_holiday(today):  # never sent on those days
            await page.click("#schedule")
            await page.wait_for_selector(".progress[aria-valuenow='100']", timeout=60_000)
            width = await page.evaluate("document.querySelector('.progress span').getBoundingClientRect().width")
            full = await page.evaluate("document.querySelector('.progress').getBoundingClientRect().width")
            assert abs(width - full) < 1  # the bar is drawn to its value, not blocked
        await browser.close()
    assert violations == []
    assert product.stop() == 0
