"""Hostile text is shown as text, in real Chromium against ``run.py serve`` and the real bot.

The corpus (``xss_corpus.txt``: script tags, event handlers, ``javascript:`` URLs, SVG/MathML, broken
tags, template injection, CSS injection, unicode and right-to-left tricks, entities, very long strings)
comes in as members would send it: SMS bodies, e-mails (body, subject, From display name, attachment
names), Telegram messages (caption, first name, document name), web-chat messages typed in the widget;
as member records loaded by ``run.py import`` (names, claim kinds, complaint subjects); and as dead
letters whose error quotes it. Agents' replies carrying it go back to the member's widget.

On every page looked at (the console's queue, each conversation with the member's record, the
complaints, the supervisor's dashboard with its dead letters, the widget before and after a reload, whose
history is then masked):
no dialog opens, no element the text would make exists (each payload marks its elements with
``data-xss``; no ``on*`` attribute, inline script, frame, ``javascript:`` link... exists at all), each
payload is visible as written, and no Content-Security-Policy violation fired: the text was escaped,
the policy had nothing to stop.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, fields
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import aiosmtplib
import pytest
from playwright.async_api import Browser, BrowserContext, Dialog, Page
from redis.asyncio import Redis

from gateway import keys
from gateway.envelope import inbound
from members.records import Claim, Complaint, Member
from tests.e2e.browser import chromium
from tests.e2e.product import ROOT, TELEGRAM_SECRET, Product
from tests.e2e.test_bot_e2e import conversation_of
from tests.e2e.test_csp_browser import WATCH_CSP
from tests.e2e.test_sms_e2e import post_sms
from tests.fakes.telegram import as_body, update

pytestmark = pytest.mark.browser
PASSWORD = "un-mot-de-passe-assez-long"
HANDOFF = "je veux parler a un conseiller"
CORPUS = [
    line
    for line in (Path(__file__).parent / "xss_corpus.txt").read_text(encoding="utf-8").splitlines()
    if line and line != "#" and not line.startswith("# ")
]
# What fits a member record's name columns (80 characters, trimmed by the import).
NAMES = [p for p in CORPUS if len(p) <= 80 and p == p.strip()]

# Anything the corpus would have made if it had been parsed as markup, or could run.
INJECTED = """() => {
  const found = [];
  for (const node of document.querySelectorAll("*")) {
    for (const attr of node.attributes) {
      const name = attr.name.toLowerCase();
      if (name === "data-xss" || name.startsWith("on")) found.push(`<${node.localName} ${name}>`);
      if (["href", "src", "action", "data", "formaction", "xlink:href"].includes(name)
          && /^\\s*(javascript|data):/i.test(attr.value)) found.push(`<${node.localName} ${name}=${attr.value}>`);
    }
  }
  const never = "script:not([src]), iframe, frame, object, embed, base, meta[http-equiv], style, link:not([rel=stylesheet]), " +
    "marquee, template, math, video, audio, source, details, noscript, img, body svg:not(#chart svg)";
  for (const node of document.querySelectorAll(never)) found.push(`<${node.localName}> in ${node.parentElement?.id || node.parentElement?.className}`);
  return found;
}"""


def batched(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def shown(text: str) -> str:
    """Text as compared on screen: runs of white space are one space (CSS may fold them)."""
    return " ".join(text.split())


@dataclass
class Watch:
    """What must stay empty: dialogs, CSP violations, page errors."""

    dialogs: list[str]
    violations: list[str]

    async def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        await dialog.dismiss()

    async def page(self, context: BrowserContext) -> Page:
        page = await context.new_page()
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda exc: self.violations.append(f"page error: {exc}"))
        return page

    async def context(self, browser: Browser) -> BrowserContext:
        context = await browser.new_context()
        await context.expose_function("reportCspViolation", lambda text: self.violations.append(text))
        await context.add_init_script(WATCH_CSP)
        return context

    async def clean(self, page: Page, where: str) -> None:
        assert await page.evaluate(INJECTED) == [], f"{where}: markup from the corpus is in the page"
        assert self.dialogs == [], f"{where}: a dialog opened"
        assert self.violations == [], f"{where}: the policy had to step in"


async def all_visible(page: Page, selector: str, texts: list[str], where: str, timeout: float = 30.0) -> None:
    """Wait until each of ``texts`` is in the inner text of ``selector``; fail naming what is missing."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        screen = shown(await page.inner_text(selector))
        missing = [t for t in texts if shown(t) not in screen]
        if not missing:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{where}: {len(missing)} of {len(texts)} not shown as written, e.g. {missing[:3]!r}")
        await asyncio.sleep(0.3)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


def run(product: Product, redis_url: str, *args: str) -> str:
    """A command of ``run.py``, as an administrator types it."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args], input=PASSWORD + "\n", capture_output=True, text=True,
        env={**os.environ, **product.env, "REDIS_URL": redis_url}, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def log_in(watch: Watch, browser: Browser, product: Product, login: str) -> Page:
    page = await watch.page(await watch.context(browser))
    await page.goto(product.url + "/console/login")
    await page.fill("input[name=login]", login)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/console**")
    if not page.url.endswith("/console"):
        await page.goto(product.url + "/console")
    await page.wait_for_selector("#live.on", timeout=15_000)
    return page


@dataclass
class Hostile:
    """A member whose record carries four payloads: two names, two claim kinds."""

    member: Member
    kinds: list[str]


def import_members(folder: Path) -> list[Hostile]:
    """members.csv, claims.csv and complaints.csv with the corpus in their free-text columns."""
    folder.mkdir()
    today = dt.date.today()
    people: list[Hostile] = []
    claims: list[Claim] = []
    for i, group in enumerate(batched(NAMES, 4)):
        first, last, *kinds = (*group, *group)[:4]
        number = f"M09{i:05d}"
        member = Member(number, first, last, "1970-01-01", f"+3319902{i:04d}", f"xss{i}@example.fr", "confort",
                        "Bretagne", "famille", "50.00", (today + dt.timedelta(days=30)).isoformat())  # fmt: skip
        people.append(Hostile(member, kinds))
        for j, kind in enumerate(kinds):
            claims.append(Claim(f"SX{i:04d}{j}", number, (today - dt.timedelta(days=3)).isoformat(), kind, "10.00",
                                "", "in_progress", "", False))  # fmt: skip
    # The console lists 30 open complaints; the planted member Camille has one.
    complaints = [
        Complaint(
            f"REC-X-{k:04d}",
            people[k % len(people)].member.number,
            (today - dt.timedelta(days=1)).isoformat(),
            False,
            (today + dt.timedelta(days=1)).isoformat(),
            "open",
            subject,
            "",
        )
        for k, subject in enumerate(p for p in CORPUS if len(p) <= 200)
    ][:29]
    for name, rows in (("members.csv", [h.member for h in people]), ("claims.csv", claims),
                       ("complaints.csv", complaints)):  # fmt: skip
        with (folder / name).open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow([f.name for f in fields(rows[0])])
            for row in rows:
                writer.writerow([("1" if v else "0") if isinstance(v, bool) else v for v in
                                 (getattr(row, f.name) for f in fields(row))])  # fmt: skip
    return people


async def handed_off(redis: Redis, urn: str, channel: str, timeout: float = 60.0) -> str:
    """The conversation of ``urn`` once the bot handed it to agents."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            conv = await conversation_of(redis, urn, channel)
        except Exception:  # not created yet
            conv = {}
        if conv.get("status") == "handoff":
            return conv["id"]
        assert asyncio.get_running_loop().time() < deadline, f"{channel} conversation not handed off: {conv}"
        await asyncio.sleep(0.2)


def email(sender: str, display: str, subject: str, body: str, attachment: str, n: int) -> tuple[bytes, str]:
    """The message as sent (headers unfolded: the standard library folds a long display name full of
    markup into a broken header) and its sender."""
    mail = EmailMessage()
    mail["From"] = Address(display_name=display, addr_spec=sender)
    mail["To"] = "contact@mutuelle.example"
    mail["Subject"] = subject
    mail["Message-ID"] = f"<xss{n}@mail.example.fr>"
    mail.set_content(body)
    if attachment:
        mail.add_attachment(b"%PDF-1.4\n", maintype="application", subtype="pdf", filename=attachment)
    return mail.as_bytes(policy=policy.SMTP.clone(max_line_length=None)), sender


async def send_email(product: Product, mail: tuple[bytes, str]) -> None:
    raw, sender = mail
    await aiosmtplib.send(raw, sender=sender, recipients=["contact@mutuelle.example"], hostname="127.0.0.1",
                          port=product.smtp_port)  # fmt: skip


def telegram_document(update_id: int, chat_id: int, payload: str) -> dict[str, Any]:
    """A document with a caption, from a user whose first name is the payload."""
    data = update(update_id, chat_id, "", first_name=payload[:64])
    message = data["message"]
    del message["text"]
    message["caption"] = payload
    message["document"] = {"file_id": f"BQAD{update_id}", "file_unique_id": f"AgAD{update_id}",
                           "file_name": payload, "mime_type": "application/pdf", "file_size": 9}  # fmt: skip
    return data


async def test_members_hostile_text_is_text_in_the_console(
    bot_product: Product, browser: Browser, redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    assert len(CORPUS) >= 40
    people = await asyncio.to_thread(import_members, tmp_path / "import")
    await asyncio.to_thread(run, bot_product, redis_url, "import", str(tmp_path / "import"))
    await asyncio.to_thread(run, bot_product, redis_url, "create-user", "sophie", "--first-name", "Sophie",
                            "--role", "supervisor", "--password-stdin")  # fmt: skip
    chat_id = 5150001
    tg_headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}
    sms_member, mail_member = people[0].member, people[1].member
    async with aiohttp.ClientSession() as http:

        async def telegram(body: dict[str, Any]) -> None:
            async with http.post(f"{bot_product.url}/telegram/webhook", data=as_body(body), headers=tg_headers) as r:
                assert r.status == 200

        # Each hostile member asks for an agent (the bot hands off); so do the e-mail and Telegram senders.
        for batch in batched(people, 4):
            await asyncio.gather(*(post_sms(http, bot_product, h.member.phone, HANDOFF) for h in batch))
        await send_email(bot_product, email(mail_member.email, CORPUS[0], "Aide", HANDOFF, "", 0))
        await telegram(update(9000, chat_id, HANDOFF, first_name=CORPUS[1]))
        conv_sms = await handed_off(redis, f"tel:{sms_member.phone}", "sms")
        conv_mail = await handed_off(redis, f"mailto:{mail_member.email}", "email")
        conv_tg = await handed_off(redis, f"telegram:{chat_id}", "telegram")
        member_convs = {h.member.number: await handed_off(redis, f"tel:{h.member.phone}", "sms") for h in people}

        # Now with the agents (the bot is silent), the corpus comes in on every channel.
        for n, payload in enumerate(CORPUS, start=1):
            assert (await post_sms(http, bot_product, sms_member.phone, payload))[0] == 200
            mail = email(mail_member.email, payload[:200], payload[:300], f"Message : {payload}", payload[:200], n)
            await send_email(bot_product, mail)
            await telegram(telegram_document(9000 + n, chat_id, payload))

    # Dead letters written by a faulty producer; the error each one gets quotes the payload.
    good = json.loads(inbound("sms", "tel:+33199029999", "Bonjour", "SMdead").to_json())
    for n, payload in enumerate(CORPUS[:12]):
        entry = {**good, "id": f"dead{n}", "attachments": [{payload: 1}]}
        await redis.xadd(keys.stream("in", keys.shard_of(good["urn"], 1)), {"m": json.dumps(entry)})

    watch = Watch([], [])
    page = await log_in(watch, browser, bot_product, "sophie")
    convs = [conv_sms, conv_mail, conv_tg, *member_convs.values()]
    for conv in convs:
        await page.locator(f"#queue li[data-id='{conv}']").wait_for(timeout=15_000)
    await all_visible(page, "#complaints", [p for p in CORPUS if len(p) <= 200][:29], "complaints")
    await watch.clean(page, "queue and complaints")

    async def open_conversation(conv: str) -> None:
        await page.locator(f"#queue li[data-id='{conv}'] .reason").click()
        await page.wait_for_selector(f"#detail[data-layout^='{conv}|'] #messages")

    await open_conversation(conv_sms)
    await all_visible(page, "#messages", CORPUS, "SMS conversation")
    await watch.clean(page, "SMS conversation")
    await open_conversation(conv_mail)
    await all_visible(page, "#messages", [f"Message : {p}" for p in CORPUS], "e-mail conversation")
    await watch.clean(page, "e-mail conversation")
    await open_conversation(conv_tg)
    await all_visible(page, "#messages", CORPUS, "Telegram conversation")
    await watch.clean(page, "Telegram conversation")
    for hostile in people:
        await open_conversation(member_convs[hostile.member.number])
        m = hostile.member
        await all_visible(page, "#fiche", [f"{m.first_name} {m.last_name}", *hostile.kinds], f"record of {m.number}")
        await watch.clean(page, f"record of {m.number}")

    # The supervisor's dashboard: the dead letters with their errors, as stored.
    deadline = asyncio.get_running_loop().time() + 30
    while await redis.xlen(keys.dead("in", 0)) < 12 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
    dead = await redis.xrange(keys.dead("in", 0))
    errors = [fields_["error"] for _, fields_ in dead]
    assert len(errors) == 12 and all("data-xss" in e or "alert" in e for e in errors)
    await page.goto(bot_product.url + "/console/supervisor")
    await all_visible(page, "#dead", errors, "dead letters")
    await watch.clean(page, "supervisor's dashboard")


async def test_agents_hostile_replies_are_text_in_the_widget(
    bot_product: Product, browser: Browser, redis: Redis, redis_url: str
) -> None:
    await asyncio.to_thread(run, bot_product, redis_url, "create-user", "julie", "--first-name", "Julie", "--skills",
                            "benefits,complaints,quotes,sales", "--password-stdin")  # fmt: skip
    watch = Watch([], [])
    member = await watch.page(await watch.context(browser))
    await member.goto(bot_product.url + "/")
    await member.click(".mwc-toggle")
    await member.wait_for_selector(".mwc-root[data-connected=true]", timeout=15_000)
    await member.fill(".mwc-input", HANDOFF)
    await member.click(".mwc-send")
    session = (await member.evaluate("localStorage.getItem('mutuelle-webchat-token')")).split(".")[0]
    conv = await handed_off(redis, f"webchat:{session}", "webchat")

    julie = await log_in(watch, browser, bot_product, "julie")
    await julie.locator(f"#queue li[data-id='{conv}'] button.take").click()
    await julie.wait_for_selector("#reply-text", timeout=15_000)

    # The member types the corpus; the agent answers with it.
    for payload in CORPUS:
        await member.fill(".mwc-input", payload)
        await member.click(".mwc-send")
    for payload in CORPUS:
        await julie.fill("#reply-text", payload)
        await julie.click("#send")
        await julie.wait_for_function("() => document.querySelector('#reply-text').value === ''", timeout=15_000)
    await all_visible(julie, "#messages", CORPUS, "agent's conversation")
    await watch.clean(julie, "agent's conversation")

    async def widget_shows_all(where: str, timeout: float = 30.0) -> None:
        await all_visible(member, ".mwc-log", CORPUS, where)
        # The member's own copies satisfy the wait above: each side's messages are awaited on their own
        # (the agent's last replies may still be on their way), then must be there exactly as written.
        deadline = asyncio.get_running_loop().time() + timeout
        for kind in ("mwc-agent", "mwc-member"):  # the agent's replies are labelled with Julie's name
            while True:
                texts = await member.locator(f".mwc-log li.{kind} .mwc-text").evaluate_all(
                    "(items) => items.map((i) => i.textContent)"
                )
                missing = [p for p in CORPUS if p not in texts]
                if not missing or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.3)
            assert missing == [], (
                f"{where}: {len(missing)} {kind} messages not shown exactly as written: {missing[:2]!r}"
            )
        await watch.clean(member, where)

    await widget_shows_all("widget")
    # A reload is a new page on a possibly shared screen: the history holds an agent's words (which may
    # carry the member's data), so it is replayed masked; what comes after it is shown, as text.
    await member.reload()
    await member.click(".mwc-toggle")
    await member.wait_for_selector(".mwc-log >> text=contenu masqué", timeout=30_000)
    replayed = await member.inner_text(".mwc-log")
    assert not [p for p in CORPUS if shown(p) in shown(replayed)], "a masked history shows a message"
    await watch.clean(member, "widget after a reload (masked)")
    after = CORPUS[:5]
    for payload in after:
        await julie.fill("#reply-text", payload)
        await julie.click("#send")
        await julie.wait_for_function("() => document.querySelector('#reply-text').value === ''", timeout=15_000)
    await all_visible(member, ".mwc-log", after, "widget after a reload")
    texts = await member.locator(".mwc-log li.mwc-agent .mwc-text").evaluate_all(
        "(items) => items.map((i) => i.textContent)"
    )
    assert [p for p in after if p not in texts] == [], "agent's replies after a reload not shown as written"
    await watch.clean(member, "widget after a reload")


async def test_staff_and_public_pages_show_hostile_text_as_text(
    make_product: Callable[..., Product], browser: Browser, tmp_path: Path
) -> None:
    """Campaign titles, template values and member names in the campaign console (list and previews, so
    ``{{7*7}}`` in a value is printed, not evaluated), and the public callback form echoing what was typed."""
    loose = {"CALLBACK_BURST": "1000", "CALLBACK_RATE_PER_HOUR": "100000", "PUBLIC_BURST": "1000"}
    product = make_product(**loose)
    await product.start()
    redis_url = f"redis://127.0.0.1:{(product.env_var_dir / 'redis' / 'redis.port').read_text().strip()}/0"
    people = await asyncio.to_thread(import_members, tmp_path / "import")
    await asyncio.to_thread(run, product, redis_url, "import", str(tmp_path / "import"))
    await asyncio.to_thread(run, product, redis_url, "create-user", "claire", "--first-name", "Claire", "--role",
                            "communications", "--password-stdin")  # fmt: skip
    watch = Watch([], [])
    page = await watch.page(await watch.context(browser))
    await page.goto(product.url + "/console/login")
    await page.fill("input[name=login]", "claire")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/console/campaigns")
    effective = (dt.date.today() + dt.timedelta(days=70)).replace(day=1).isoformat()
    titles = []
    for n, payload in enumerate(CORPUS):
        title = payload[:120]
        titles.append(title)
        spec = {"kind": "information", "title": title, "effective_date": effective, "channels": ["email"],
                "values": {"message": payload}, "audience": {"members": [people[n % len(people)].member.number]},
                "window": {"start": "09:00", "end": "19:00"}}  # fmt: skip
        status = await page.evaluate(
            """(spec) => fetch("/console/api/campaigns", {method: "POST", headers: {"Content-Type": "application/json",
               "X-CSRF-Token": document.querySelector('meta[name="csrf-token"]').content}, body: JSON.stringify(spec)})
               .then((r) => r.status)""",
            spec,
        )
        assert status == 201, (payload, status)
    await page.reload()
    await all_visible(page, "#list", titles, "campaign list")
    await watch.clean(page, "campaign list")
    items = page.locator("#list li")
    assert await items.count() == len(CORPUS)
    for i in range(len(CORPUS)):
        item = items.nth(i)
        title = await item.locator("strong").text_content()
        assert title in titles
        n = titles.index(title)
        await item.click()
        await page.click("#preview")
        await page.wait_for_selector(".preview-text")
        member = people[n % len(people)].member
        texts = [f"E-mail — {title}", f"Bonjour {member.first_name},", CORPUS[n]]
        await all_visible(page, "#detail", [title, *texts], f"preview of campaign {n}")
        text = await page.text_content(".preview-text")
        assert text is not None and CORPUS[n] in text and "49" not in text.replace(CORPUS[n], "")
        await watch.clean(page, f"preview of campaign {n}")

    # The callback form gives back what was typed, in its fields, when the number is wrong.
    form = await watch.page(await watch.context(browser))
    for payload in CORPUS:
        await form.goto(product.url + "/callback")
        await form.fill("#phone", "123")
        await form.fill("#date", (dt.date.today() + dt.timedelta(days=1)).isoformat())
        await form.evaluate("() => document.querySelector('#name').removeAttribute('maxlength')")
        await form.fill("#name", payload[:100])
        await form.fill("#comment", payload[:500])
        await form.click("button[type=submit]")
        await form.wait_for_selector("[role=alert]")
        assert await form.input_value("#name") == payload[:100].strip()
        assert await form.input_value("#comment") == payload[:500].strip()
        await watch.clean(form, "callback form")
    # An unsubscribe link made of markup is refused without being echoed.
    await form.goto(product.url + "/desabonnement/" + quote(CORPUS[5], safe=""))
    await form.wait_for_selector("text=Lien de désabonnement invalide")
    await watch.clean(form, "unsubscribe page")
    assert product.stop() == 0
