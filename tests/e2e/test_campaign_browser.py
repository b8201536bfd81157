"""The campaign console in real Chromium against ``run.py serve``: communications staff log in,
create a contribution-change campaign, count its audience, preview the SMS (encoding, segments),
see a too-late schedule refused with the latest allowed date, schedule it properly, follow the
progress bar to the end and download the proof of notice (pausing is tested on the engine)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from collections.abc import Callable

import pytest
from playwright.async_api import async_playwright
from redis.asyncio import Redis

from campaigns.rules import PARIS, fr_date, is_public_holiday, latest_notice_date
from members.records import Member, MemberStore
from tests.e2e.product import ROOT, Product
from tests.e2e.test_sms_e2e import redis_of
from tests.e2e.test_webchat_browser import CHROMIUM_ARGS
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import FakeTwilio

TODAY = dt.datetime.now(PARIS)
PASSWORD = "un-mot-de-passe-assez-long"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        TODAY.isoweekday() == 7 or is_public_holiday(TODAY.date()),
        reason="notices are never sent on a Sunday or a public holiday in Paris: nothing to observe today",
    ),
]


async def test_staff_create_preview_schedule_and_follow_a_campaign(
    make_product: Callable[..., Product], fake_twilio: FakeTwilio, smtp_sink: SmtpSink
) -> None:
    product = make_product(EMAIL_RATE_PER_S="200", SMS_RATE_PER_S="200")
    await product.start()
    redis: Redis = await redis_of(product)
    store = MemberStore(redis)
    async with redis.pipeline(transaction=False) as pipe:
        for i in range(1, 41):
            store.write(pipe, Member(f"M7{i:06d}", "Nadia", f"Roux{i}", "1980-05-05", f"+3346571{i:04d}",
                                     f"r{i}@example.fr", "renfort", "Wallis-et-Futuna", "famille", "51.00", "2027-03-10"))  # fmt: skip
        await pipe.execute()
    await redis.aclose()
    done = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "create-user", "claire", "--first-name", "Claire", "--role",
         "communications", "--password-stdin"],
        input=PASSWORD + "\n", capture_output=True, text=True, env={**os.environ, **product.env, "REDIS_URL": ""},
        cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    effective = (TODAY.date() + dt.timedelta(days=70)).replace(day=1)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = await (await browser.new_context(accept_downloads=True)).new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))
        await page.goto(product.url + "/console")
        await page.fill("input[name=login]", "claire")
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_url("**/console/campaigns")

        await page.click("#new")
        await page.select_option("select[name=kind]", "contribution_change")
        await page.fill("input[name=effective_date]", effective.isoformat())
        await page.check("input[name=cover_levels][value=renfort]")
        await page.fill("input[name=regions]", "Wallis-et-Futuna")
        await page.select_option("select[name=channels]", "sms,email")
        await page.fill("input[name=start]", "00:00")
        await page.fill("input[name=end]", "23:59")
        await page.click("#create button[type=submit]")
        await page.wait_for_selector("#count", timeout=10_000)

        await page.click("#count")
        await page.wait_for_selector("#count-result")
        assert (await page.inner_text("#count-result")).startswith("40 adhérents : sms 40")
        await page.click("#preview")
        await page.wait_for_selector(".preview h4")
        headings = await page.locator(".preview h4").all_inner_texts()
        assert headings[0] == "SMS — GSM-7, 1 segment(s)"
        assert f"à partir du {fr_date(effective)}" in await page.inner_text(".preview-text >> nth=0")

        # Too late: the notice would come after the latest allowed date.
        latest = latest_notice_date(effective)
        await page.fill("#start-at", f"{(latest + dt.timedelta(days=1)).isoformat()}T10:00")
        await page.click("#schedule")
        await page.wait_for_selector("#schedule-error")
        assert f"le {fr_date(latest)}" in await page.inner_text("#schedule-error")

        await page.fill("#start-at", "")
        await page.click("#schedule")  # now
        await page.wait_for_selector("#state >> text=40 adhérents prévus", timeout=10_000)
        await page.wait_for_selector(".progress[aria-valuenow='100']", timeout=60_000)  # live, without reloading
        assert "40 notices envoyées" in await page.inner_text("#figures")
        assert await page.locator(".chart svg rect").count() >= 1
        async with page.expect_download() as download_info:
            await page.click("#proof")
        proof = (await (await download_info.value).path()).read_text(encoding="utf-8")
        assert proof.splitlines()[0].startswith("member,channel,tried,status")
        assert len(proof.splitlines()) == 41

        # A second draft whose audience is a spreadsheet's CSV (semicolons, Windows-1252 accents).
        await page.click("#new")
        await page.select_option("select[name=kind]", "contribution_change")
        await page.fill("input[name=effective_date]", effective.isoformat())
        await page.fill("input[name=regions]", "")
        await page.uncheck("input[name=cover_levels][value=renfort]")
        sheet = "N° adhérent;Nom\r\nM7000001;Roux1\r\nM7000002;Roux2\r\n???;Illisible\r\nM7000002;Roux2\r\nM7999999;Inconnu\r\n"
        await page.set_input_files(
            "input[name=list]", files=[{"name": "liste.csv", "mimeType": "text/csv", "buffer": sheet.encode("cp1252")}]
        )
        await page.click("#create button[type=submit]")
        await page.wait_for_selector("#count", timeout=10_000)
        assert (await page.inner_text("#toast")) == (
            "Liste importée : 3 adhérents, dont 1 inconnus à ce jour ; 1 ligne(s) ignorée(s) (ligne 4)."
        )
        await page.click("#count")
        await page.wait_for_selector("#count-result")
        assert (await page.inner_text("#count-result")).startswith("2 adhérents : sms 2")
        await browser.close()
    assert sorted(m.to for m in fake_twilio.messages) == [f"+3346571{i:04d}" for i in range(1, 41)]
    assert errors == []
    assert product.stop() == 0
