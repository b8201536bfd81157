"""The campaign console in real Chromium against one ``run.py serve`` for the module: communications
staff log in, create a contribution-change campaign, count its audience, preview the SMS (encoding,
segments), see a too-late schedule refused with the latest allowed date, schedule it properly, follow
the progress bar to the end and download the proof of notice (pausing is tested on the engine); and,
with the keyboard alone, draft a campaign from a file of each member's new contribution, see a
missing value refused by name, edit the draft, count, preview three members and schedule it. axe-core
finds nothing on each state of the page."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import io
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from openpyxl import load_workbook
from playwright.async_api import Browser, Page
from playwright.async_api import TimeoutError as PlaywrightTimeout
from redis.asyncio import Redis

from campaigns.rules import PARIS, fr_date, is_public_holiday, latest_notice_date
from members.records import Member, MemberStore
from tests.e2e.accessibility import assert_accessible
from tests.e2e.browser import chromium
from tests.e2e.product import ACCOUNT_SID, AUTH_TOKEN, ROOT, TELEGRAM_TOKEN, Product, loopback_env
from tests.e2e.test_sms_e2e import redis_of
from tests.fakes.smtp import SmtpSink
from tests.fakes.telegram import FakeTelegram
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
EFFECTIVE = (TODAY.date() + dt.timedelta(days=70)).replace(day=1)
# The keyboard scenario's members: e-mail only, each paying their own amount.
OWN = [(f"M6{i:06d}", f"{40 + 3 * i}.{i:02d}") for i in range(1, 9)]


class Sinks:
    def __init__(self, smtp: SmtpSink, twilio: FakeTwilio) -> None:
        self.smtp, self.twilio = smtp, twilio


@pytest.fixture(scope="module")
async def sinks() -> AsyncIterator[Sinks]:
    async with SmtpSink() as smtp, FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as twilio:
        yield Sinks(smtp, twilio)


@pytest.fixture(scope="module")
async def product(sinks: Sinks, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Product]:
    """One product for the module's scenarios: members loaded, a communications officer created."""
    tmp = tmp_path_factory.mktemp("campaign-browser")
    async with FakeTelegram(TELEGRAM_TOKEN) as telegram:
        os.environ.pop("REDIS_URL", None)
        env = loopback_env(tmp / "var", sinks.twilio.base_url, telegram.base_url, sinks.smtp.url)
        product = Product({**env, "EMAIL_RATE_PER_S": "200", "SMS_RATE_PER_S": "200"}, tmp / "product.log")
        await product.start()
        redis: Redis = await redis_of(product)
        store = MemberStore(redis)
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(1, 41):
                store.write(pipe, Member(f"M7{i:06d}", "Nadia", f"Roux{i}", "1980-05-05", f"+3346571{i:04d}",
                                         f"r{i}@example.fr", "renfort", "Wallis-et-Futuna", "famille", "51.00",
                                         "2027-03-10"))  # fmt: skip
            for n, (number, _) in enumerate(OWN, start=1):
                store.write(pipe, Member(number, "Lucie", f"Perrin{n}", "1968-09-09", "", f"p{n}@example.fr",
                                         "confort", "Corse", "individuel", f"{40 + 3 * n}.00", "2027-03-10"))  # fmt: skip
            await pipe.execute()
        await redis.aclose()
        done = subprocess.run(
            [sys.executable, str(ROOT / "run.py"), "create-user", "claire", "--first-name", "Claire", "--role",
             "communications", "--password-stdin"],
            input=PASSWORD + "\n", capture_output=True, text=True, env={**os.environ, **product.env, "REDIS_URL": ""},
            cwd=ROOT, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        yield product
        product.stop()
        pidfile = Path(product.env["VAR_DIR"]) / "redis" / "redis.pid"
        with contextlib.suppress(OSError, ValueError, ProcessLookupError):
            os.kill(int(pidfile.read_text()), signal.SIGTERM)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


async def signed_in(browser: Browser, product: Product) -> tuple[Page, list[str]]:
    page = await (await browser.new_context(accept_downloads=True, locale="fr-FR")).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))
    await page.goto(product.url + "/console")
    await page.bring_to_front()  # the active tab: the file chooser opens from the keyboard there only
    await focus_by_tab(page, "input[name=login]")  # autofocused, or the first field
    await page.keyboard.type("claire")
    await page.keyboard.press("Tab")
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/console/campaigns")
    return page, errors


async def test_staff_create_preview_schedule_and_follow_a_campaign(
    product: Product, sinks: Sinks, browser: Browser
) -> None:
    page, errors = await signed_in(browser, product)
    await assert_accessible(page, "campaigns list")
    await page.click("#new")
    await page.select_option("select[name=kind]", "contribution_change")
    await page.fill("input[name=effective_date]", EFFECTIVE.isoformat())
    await page.check("input[name=cover_levels][value=renfort]")
    await page.fill("input[name=regions]", "Wallis-et-Futuna")
    await page.select_option("select[name=channels]", "sms,email")
    await page.fill("textarea[name=values]", "new_contribution = 53,00")  # one amount: all pay 51,00 €
    await page.fill("input[name=start]", "00:00")
    await page.fill("input[name=end]", "23:59")
    assert "des notices partiraient de 00:00 à 23:59" in await page.inner_text("#window-warning")  # before saving
    await page.click("#create button[type=submit]")
    await page.wait_for_selector("#count", timeout=10_000)
    assert await page.locator("#create").is_hidden()  # the form goes away once the draft exists
    assert "null" not in await page.inner_text("#detail")
    assert f"effet le {fr_date(EFFECTIVE)}" in await page.inner_text("#detail")

    await page.click("#count")
    await page.wait_for_selector("#count-result")
    assert (await page.inner_text("#count-result")).startswith("40 adhérents : SMS 40")
    await page.click("#preview")
    await page.wait_for_selector(".preview h4")
    headings = await page.locator(".preview h4").all_inner_texts()
    assert headings[0] == "SMS — GSM-7, 1 segment(s)"
    first = await page.inner_text(".preview-text >> nth=0")
    assert f"dès le {fr_date(EFFECTIVE)}" in first and "de 51,00 € à 53,00 € (+2,00 €, +3,9 %)" in first

    # Too late: the notice would come after the latest allowed date.
    latest = latest_notice_date(EFFECTIVE)
    await page.fill("#start-at", f"{(latest + dt.timedelta(days=1)).isoformat()}T10:00")
    await page.click("#schedule")
    await page.wait_for_selector("#schedule-error")
    assert f"le {fr_date(latest)}" in await page.inner_text("#schedule-error")

    await page.fill("#start-at", "")
    await page.click("#schedule")  # now (outside working hours: confirmed in the dialog)
    await page.wait_for_selector("#state >> text=40 adhérents prévus", timeout=10_000)
    await page.wait_for_selector(".progress[aria-valuenow='100']", timeout=60_000)  # live, without reloading
    assert "40 notices envoyées" in await page.inner_text("#figures")
    assert await page.locator(".chart svg rect").count() >= 1
    # Every SMS gone: the campaign says what it still waits for, instead of "en cours" for hours.
    await page.wait_for_selector("#state >> text=en attente d'éventuels retours de non-distribution", timeout=10_000)
    assert "toutes les notices sont parties" in await page.inner_text("#state")
    await assert_accessible(page, "sent campaign with its proof")
    async with page.expect_download() as download_info:
        await page.click("#proof")
    raw = (await (await download_info.value).path()).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # French Excel reads UTF-8 with its BOM
    proof = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))
    assert len(proof) == 40 and {row["Canal"] for row in proof} == {"SMS"}
    assert all(row["Envoi"].startswith(TODAY.strftime("%d/%m/%Y")) for row in proof)
    async with page.expect_download() as xlsx_info:
        await page.click("#proof-xlsx")
    xlsx = await xlsx_info.value
    assert xlsx.suggested_filename.endswith(".xlsx")
    sheet = load_workbook(io.BytesIO((await xlsx.path()).read_bytes())).active
    assert sheet is not None and sheet.max_row == 41 and sheet.cell(1, 1).value == "Numéro d'adhérent"

    # A second draft whose audience is a spreadsheet's CSV (semicolons, Windows-1252 accents).
    await page.click("#new")
    assert await page.input_value("input[name=regions]") == ""  # the form was reset: no duplicate invited
    await page.select_option("select[name=kind]", "contribution_change")
    await page.fill("input[name=effective_date]", EFFECTIVE.isoformat())
    await page.fill("textarea[name=values]", "new_contribution = 53,00")
    sheet_text = (
        "N° adhérent;Nom\r\nM7000001;Roux1\r\nM7000002;Roux2\r\n???;Illisible\r\nM7000002;Roux2\r\nM7999999;Inconnu\r\n"
    )
    await page.set_input_files(
        "input[name=list]", files=[{"name": "liste.csv", "mimeType": "text/csv", "buffer": sheet_text.encode("cp1252")}]
    )
    await page.click("#create button[type=submit]")
    await page.wait_for_selector("#count", timeout=10_000)
    assert (await page.inner_text("#toast")) == (
        "Brouillon créé. Fichier importé : 3 adhérents, dont 1 inconnus à ce jour ; 1 ligne(s) ignorée(s) "
        "(ligne 4) ; valeurs par adhérent : nom."
    )
    await page.click("#count")
    await page.wait_for_selector("#count-result")
    assert await page.inner_text("#count-result") == "2 adhérents : e-mail 2"  # the form was reset: e-mail first
    # Another campaign opened shows nothing of this one's count.
    await page.locator("#list button.item", has_text="Évolution de votre cotisation").last.click()
    await page.wait_for_selector("#proof")
    assert await page.locator("#count-result").count() == 0
    await page.context.close()
    sms = sorted(m.to for m in sinks.twilio.messages)
    assert sms == [f"+3346571{i:04d}" for i in range(1, 41)]
    assert errors == []


async def type_date(page: Page, selector: str, day: dt.date) -> None:
    """Type a date into a focused date field: day first as in French; the system Chromium may lay the
    field out month first (its own locale), then the segments are typed again in that order."""
    await page.keyboard.type(day.strftime("%d%m%Y"))
    if await page.input_value(selector) != day.isoformat():
        await page.keyboard.press("Shift+Tab")
        await page.keyboard.press("Shift+Tab")
        await page.keyboard.type(day.strftime("%m%d%Y"))
    assert await page.input_value(selector) == day.isoformat()


async def choose_file(page: Page, selector: str, content: bytes) -> None:
    """Open the file field's chooser from the keyboard (Enter, else Space: Chromium sometimes ignores a
    key that comes too soon after another chooser closed) and pick the file."""
    await focus_by_tab(page, selector)
    for key in ("Enter", "Space", "Enter", "Space"):
        try:
            async with page.expect_file_chooser(timeout=5_000) as chooser:
                await page.keyboard.press(key)
        except PlaywrightTimeout:
            continue
        await (await chooser.value).set_files(
            files=[{"name": "cotisations.csv", "mimeType": "text/csv", "buffer": content}]
        )
        return
    raise AssertionError(f"{selector}: no file chooser opened from the keyboard")


async def focus_by_tab(page: Page, selector: str, limit: int = 80) -> None:
    """Tab (forward) until the element matching ``selector`` has the focus, as a keyboard user would."""
    for _ in range(limit):
        if await page.evaluate("(s) => document.activeElement && document.activeElement.matches(s)", selector):
            return
        await page.keyboard.press("Tab")
    raise AssertionError(f"{selector} never got the focus with Tab")


async def test_keyboard_only_draft_from_a_file_of_own_amounts_count_preview_schedule(
    product: Product, sinks: Sinks, browser: Browser, tmp_path: Path
) -> None:
    page, errors = await signed_in(browser, product)
    await focus_by_tab(page, "#new")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#create:not([hidden])")
    await assert_accessible(page, "empty form")
    # Saved with no date: the errors are announced, the fields marked, and axe finds nothing.
    await focus_by_tab(page, "#f-title")
    await page.keyboard.press("Control+A")
    await page.keyboard.press("Delete")
    await focus_by_tab(page, "#save")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#create-errors:not([hidden])")
    assert "un titre de 3 à 120 caractères" in await page.inner_text("#create-errors")
    assert await page.get_attribute("#f-title", "aria-invalid") == "true"
    await assert_accessible(page, "form with errors")

    await focus_by_tab(page, "#f-kind", limit=5)  # the focus went to the errors, just before the fields
    await page.keyboard.press("ArrowDown")  # « Évolution de la cotisation »
    assert await page.input_value("#f-kind") == "contribution_change"
    await page.keyboard.press("Tab")
    await page.keyboard.type("Cotisation corse")
    await focus_by_tab(page, "#f-effective")
    await type_date(page, "#f-effective", EFFECTIVE)
    missing = "numéro d'adhérent;nouvelle cotisation\r\n" + "".join(
        f"{n};{a.replace('.', ',')}\r\n" if n != "M6000003" else f"{n};\r\n" for n, a in OWN
    )
    await choose_file(page, "#f-list", missing.encode())
    await focus_by_tab(page, "#save")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#detail-title:focus", timeout=10_000)
    assert "valeurs par adhérent : new_contribution" in await page.inner_text("#toast")

    await focus_by_tab(page, "#count")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#count-error")
    assert (await page.inner_text("#count-error")).startswith(
        "1 adhérent sans valeur pour « new_contribution » (nouvelle cotisation) : M6000003."
    )
    await assert_accessible(page, "count refused")

    # The draft is edited: the corrected file replaces the first one.
    await focus_by_tab(page, "#edit")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#form-title:focus")
    assert await page.input_value("#f-title") == "Cotisation corse"
    fixed = "numéro d'adhérent;nouvelle cotisation\r\n" + "".join(f"{n};{a.replace('.', ',')}\r\n" for n, a in OWN)
    await choose_file(page, "#f-list", fixed.encode())
    await focus_by_tab(page, "#save")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#detail-title:focus", timeout=10_000)
    assert await page.locator("#create").is_hidden()

    await focus_by_tab(page, "#count")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#count-result")
    assert await page.inner_text("#count-result") == f"{len(OWN)} adhérents : e-mail {len(OWN)}"
    await assert_accessible(page, "campaign counted")
    await focus_by_tab(page, "#preview")
    await page.keyboard.press("Enter")
    await page.wait_for_selector(".preview-member >> nth=2")
    shown = await page.locator(".preview-member").all_inner_texts()
    assert len(shown) == 3
    for text, n in zip(shown, (1, 2, 3), strict=True):  # side by side, each with their own figures
        current, new = f"{40 + 3 * n},00 €", f"{40 + 3 * n},{n:02d} €"
        assert f"M600000{n} — Lucie Perrin{n}" in text and f"de {current} à {new}" in text
        assert f"+0,{n:02d} €" in text.replace("\u202f", " ").replace("\xa0", " ")
    await assert_accessible(page, "preview of three members")

    await focus_by_tab(page, "#schedule")
    await page.keyboard.press("Enter")
    await page.wait_for_selector(f"#state >> text={len(OWN)} adhérents prévus", timeout=10_000)
    assert "départ le " in await page.inner_text("#state")
    await assert_accessible(page, "scheduled campaign")
    assert errors == []
    await page.context.close()
