"""« DETAIL » through ``run.py serve`` with the real Rasa: the back office sets a claim to paid through the
records API, the member gets one SMS, answers « Détail », proves who they are with their birth date and gets
that claim's act, amounts and dates (not a menu, not their other claim). Their status questions then show on
the supervisor's page: one after the message about the same claim, one on a claim changed without one."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from playwright.async_api import async_playwright
from redis.asyncio import Redis

from gateway import keys
from gateway.conversations import paris_day
from tests.e2e.accessibility import assert_accessible
from tests.e2e.browser import CHROMIUM_ARGS
from tests.e2e.product import ROOT, Product
from tests.e2e.test_accessibility_browser import PASSWORD, create_user
from tests.e2e.test_bot_e2e import sms_to, turn
from tests.fakes.twilio import FakeTwilio

NUMBER = "M0300501"
PHONE = "+33612355501"
TODAY = dt.date.today()


def day(delta: int) -> dt.date:
    return TODAY + dt.timedelta(days=delta)


def short(d: dt.date) -> str:
    return d.strftime("%d/%m/%Y")


async def test_a_member_told_of_a_paid_claim_answers_detail_and_gets_that_claim_once_verified(
    make_product: Callable[..., Product], rasa_url: str, actions_url: str, redis_url: str, redis: Redis,
    fake_twilio: FakeTwilio,
) -> None:  # fmt: skip
    product = make_product(RESPONDER="rasa", RASA_URL=rasa_url, ACTIONS_URL=actions_url, REDIS_URL=redis_url,
                           PROACTIVE_SMS_HOURS="")  # SMS at any hour: the test may run at night  # fmt: skip
    await product.start(timeout=180)
    made = subprocess.run([sys.executable, str(ROOT / "run.py"), "apikey", "create", "gestion", "--scope", "write"],
                          env=product.env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    h = {"Authorization": f"Bearer {made.stdout.strip().splitlines()[-1]}"}
    api = f"{product.url}/api/v1/records/members/{NUMBER}"
    member: dict[str, Any] = {"version": 1, "first_name": "Léa", "last_name": "Martin", "birth_date": "1980-02-14",
                              "phone": PHONE, "email": "", "cover_level": "confort", "region": "Normandie",
                              "segment": "famille", "contribution_eur": "61,20",
                              "contribution_call_date": day(40).isoformat(), "preferred_channel": "sms"}  # fmt: skip
    paid_on, cared = day(-2), day(-20)
    claim = {"care_date": cared.isoformat(), "kind": "pharmacie", "amount_eur": "80,00", "reimbursed_eur": "57,42",
             "status": "paid", "payment_date": paid_on.isoformat(), "teletransmitted": True}  # fmt: skip
    other = {"care_date": day(-3).isoformat(), "kind": "lunettes", "amount_eur": "420,00", "reimbursed_eur": "",
             "status": "in_progress", "payment_date": "", "teletransmitted": False}  # fmt: skip
    async with aiohttp.ClientSession() as http:
        async with http.put(api, json=member, headers=h) as resp:
            assert resp.status == 200, await resp.text()
        async with http.put(f"{api}/claims/CL0300502", json={**other, "version": 1}, headers=h) as resp:
            assert resp.status == 200, await resp.text()  # changed, nothing to tell yet
        async with http.put(f"{api}/claims/CL0300501", json={**claim, "version": 1}, headers=h) as resp:
            assert resp.status == 200, await resp.text()
        send, inbox = sms_to(product, fake_twilio, http, PHONE)
        deadline = time.monotonic() + 30
        while not inbox() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        months = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
                  "novembre", "décembre")  # fmt: skip
        when = f"{'1er' if paid_on.day == 1 else paid_on.day} {months[paid_on.month - 1]}"
        assert inbox() == [
            f"Ma Mutuelle : un remboursement de 57,42 € a été versé le {when}. Détail : répondez DETAIL."
        ]

        asked = await turn(send, inbox, "Détail", "date de naissance")
        assert asked == ["Pour vous répondre, je dois d'abord vérifier votre identité.",
                         "Quelle est votre date de naissance ? (JJ/MM/AAAA)"]  # fmt: skip
        [detail] = await turn(send, inbox, "14/02/1980", "57,42")
        assert detail == (f"Votre remboursement pharmacie du {short(cared)} (80,00 €) est payé : 57,42 €, versé le "
                          f"{short(paid_on)}.")  # fmt: skip
        # Still verified: status questions, one on the claim told, one on the claim changed without a message.
        await turn(send, inbox, f"où en est mon remboursement du {cared.strftime('%d/%m')} ?", "57,42")
        await turn(send, inbox, f"où en est mon remboursement du {day(-3).strftime('%d/%m')} ?", "lunettes")
        assert len(inbox()) == 6  # one message sent first, then the answers: nothing twice
    audit = [e for _, e in await redis.xrange(keys.member_audit(NUMBER)) if e["agent"] == ""]
    assert [(e["what"], json.loads(e["records"])) for e in audit] == [
        ("detail", ["claims:CL0300501"]), ("claim", ["CL0300501"]), ("claim", ["CL0300502"])]  # fmt: skip

    # What the supervisor sees, beside the bot's containment.
    await asyncio.to_thread(create_user, redis_url, "sophie", "Sophie", "--role", "supervisor")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = await browser.new_page()
        await page.goto(product.url + "/console/login")
        await page.fill("input[name=login]", "sophie")
        await page.fill("input[name=password]", PASSWORD)
        await page.keyboard.press("Enter")
        await page.wait_for_selector("#status-days tbody tr", timeout=15_000)
        today = paris_day()  # the console counts Europe/Paris days
        row = page.locator(f"#status-days tr:has(time[datetime='{today}'])")
        cells = [c.strip() for c in await row.locator("th, td").all_inner_texts()]
        assert cells[:5] == [short(dt.date.fromisoformat(today)), "2", "1", "1", "1"]
        assert cells[5].endswith("%")
        await assert_accessible(page, "supervisor page with the status questions")
        await browser.close()
