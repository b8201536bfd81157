"""Whole conversations with the bot, as members hold them, on SMS, e-mail, the web chat and Telegram.

The conversations are data (``tests/e2e/conversations/conversations.yaml``: turns, and the facts each
answer must contain); each runs for a fresh member made from a profile (``profiles.yaml``) against ONE
product instance (``run.py serve`` with the real Rasa server and action server), many side by side.
The test prints the share of in-scope conversations completed without a human (target: 95 %) and
the failures by name. ``CONVERSATIONS_ONLY=<name,…>`` runs a few; ``CONVERSATIONS_REPORT=<file>``
writes every transcript.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib
import pytest
import yaml  # type: ignore[import-untyped]
from redis.asyncio import Redis

from campaigns.model import ALL, from_input, key
from campaigns.rules import PARIS
from gateway import keys
from gateway.redis_client import connect
from members.records import Card, Claim, Complaint, Member, Membership, MemberStore, Quote
from tests.e2e.product import TELEGRAM_SECRET, Product, RasaServer, free_port, loopback_env
from tests.e2e.test_sms_e2e import post_sms
from tests.fakes.smtp import SmtpSink
from tests.fakes.telegram import FakeTelegram, as_body, update
from tests.fakes.twilio import FakeTwilio

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

HERE = Path(__file__).parent / "conversations"
CHANNELS = ("sms", "email", "webchat")
TODAY = dt.date.today()
MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
          "novembre", "décembre")  # fmt: skip
BIRTH_STYLES = ("slash", "words", "short", "packed", "words2", "iso")
NUMBER_STYLES = ("canonical", "bare", "spaced", "lower", "mt")
SIDE_BY_SIDE = 12
HANDED_OFF = ("Je vous mets en relation", "je la transmets à un conseiller", "Un conseiller prend la suite",
              "un conseiller prend la suite", "Aucun conseiller n'est disponible")  # fmt: skip


@dataclass
class Case:
    name: str
    profile: str
    channel: str
    turns: list[dict[str, Any]]
    scope: str
    index: int

    @property
    def title(self) -> str:
        return f"{self.name} [{self.channel}]"


def load_cases() -> list[Case]:
    only = {n for n in os.environ.get("CONVERSATIONS_ONLY", "").split(",") if n}
    cases: list[Case] = []
    counter = itertools.count(1)
    for conv in yaml.safe_load((HERE / "conversations.yaml").read_text(encoding="utf-8")):
        if only and conv["name"] not in only:
            continue
        first = conv["turns"][0]
        openings = [first["say"], *first.get("variants", [])] if "say" in first else [None]
        for v, opening in enumerate(openings):
            turns = [dict(t) for t in conv["turns"]]
            if opening is not None:
                turns[0] = {**turns[0], "say": opening}
            name = conv["name"] + (f"#{v + 1}" if len(openings) > 1 else "")
            for channel in conv.get("channels", CHANNELS):
                cases.append(Case(name, conv["profile"], channel, turns, conv.get("scope", "bot"), next(counter)))
    return cases


# Members -------------------------------------------------------------------------------------------


def day(n: int) -> dt.date:
    return TODAY + dt.timedelta(days=n)


@dataclass
class Person:
    number: str
    phone: str
    email: str
    born: dt.date
    birth_style: str
    number_style: str


def person_for(case: Case, profile: dict[str, Any]) -> Person:
    return Person(
        number=f"M9{case.index:06d}",
        phone=f"+33199{case.index:06d}",
        email=f"membre{case.index}@example.fr",
        born=dt.date.fromisoformat(profile["birth_date"]),
        birth_style=BIRTH_STYLES[case.index % len(BIRTH_STYLES)],
        number_style=NUMBER_STYLES[case.index % len(NUMBER_STYLES)],
    )


async def plant(redis: Redis, who: Person, profile: dict[str, Any]) -> None:
    store = MemberStore(redis)
    async with redis.pipeline(transaction=False) as pipe:
        store.write(pipe, Member(
            number=who.number, first_name="Alex", last_name="Martin", birth_date=who.born.isoformat(),
            phone=who.phone, email=who.email, cover_level=profile["cover_level"], region="Bretagne",
            segment="individuel", contribution_eur=profile["contribution_eur"],
            contribution_call_date=day(20).isoformat(),
        ))  # fmt: skip
        for c in profile.get("claims", []):
            store.write_record(pipe, Claim(
                id=f"{c['id']}{who.number[1:]}", member=who.number, care_date=day(c["days"]).isoformat(),
                kind=c["kind"], amount_eur=c["amount"], reimbursed_eur=c.get("reimbursed", ""), status=c["status"],
                payment_date=day(c["paid"]).isoformat() if "paid" in c else "", teletransmitted=c.get("tele", True),
                received_date=day(c["received"]).isoformat() if "received" in c else "",
            ))  # fmt: skip
        for c in profile.get("complaints", []):
            store.write_record(pipe, Complaint(
                id=c["id"], member=who.number, received_date=day(c["received"]).isoformat(), urgent=False,
                due_date=day(c["due"]).isoformat(), status=c["status"], subject=c["subject"],
                answered_date=day(c["answered"]).isoformat() if "answered" in c else "",
            ))  # fmt: skip
        for q in profile.get("quotes", []):
            store.write_record(pipe, Quote(
                id=q["id"], member=who.number, kind=q["kind"], received_date=day(q["received"]).isoformat(),
                status=q["status"], amount_eur=q["amount"], out_of_pocket_eur=q["oop"],
            ))  # fmt: skip
        if card := profile.get("card"):
            sent = day(card["dispatched"]).isoformat() if "dispatched" in card else ""
            store.write_record(pipe, Card(card["id"], who.number, card["status"], sent))
        if n := profile.get("notice"):
            plant_notice(pipe, who, n)
        if m := profile.get("membership"):
            store.write_record(pipe, Membership(
                m["id"], who.number, day(m["received"]).isoformat(),
                day(m["acknowledged"]).isoformat() if "acknowledged" in m else "", "",
            ))  # fmt: skip
        await pipe.execute()


def plant_notice(pipe: Any, who: Person, notice: dict[str, Any]) -> None:
    """A contribution-change campaign's record of the notice sent to this member, as the campaigns keep it
    (the campaign, its per-member row, its record of the notice, the message's delivery times)."""
    campaign = from_input({"kind": "contribution_change", "title": "Évolution de votre cotisation",
                           "effective_date": day(notice["effective"]).isoformat(), "channels": [notice["channel"]],
                           "values": {}})  # fmt: skip
    campaign.state, campaign.variables = "done", ["new_contribution"]
    sent_ms = int(dt.datetime.combine(day(notice["sent"]), dt.time(10, 0), PARIS).timestamp() * 1000)
    conv, msg = f"c.{campaign.id}.{who.number}", f"c.{campaign.id}.{who.number}.0"
    pipe.hset(key(campaign.id), mapping={"def": campaign.to_json(), "state": campaign.state})
    pipe.zadd(ALL, {campaign.id: sent_ms})
    pipe.hset(key(campaign.id, "vars"), who.number, json.dumps({"new_contribution": notice["new"]}))
    pipe.hset(key(campaign.id, "r"), who.number, json.dumps({"channel": notice["channel"], "msg": msg, "conv": conv,
                                                              "tried": [], "queued_ms": sent_ms}))  # fmt: skip
    pipe.hset(keys.message(conv, msg), mapping={"status": "delivered", "sent_ms": sent_ms,
                                                "delivered_ms": sent_ms + 5000})  # fmt: skip


# Wording -------------------------------------------------------------------------------------------


def long_date(d: dt.date) -> str:
    return f"{'1er' if d.day == 1 else d.day} {MONTHS[d.month - 1]} {d.year}"


def birth_text(who: Person) -> str:
    b, style = who.born, who.birth_style
    return {
        "slash": b.strftime("%d/%m/%Y"),
        "short": f"{b.day}/{b.month}/{b.year % 100:02d}",
        "packed": b.strftime("%d%m%Y"),
        "words": f"{b.day} {MONTHS[b.month - 1]} {b.year}",
        "words2": f"{b.day} {MONTHS[b.month - 1]} {b.year % 100:02d}",
        "iso": b.isoformat(),
    }[style]


def number_text(who: Person) -> str:
    digits = who.number[1:]
    return {
        "canonical": who.number,
        "bare": digits,
        "spaced": f"M {digits[:3]} {digits[3:]}",
        "lower": who.number.lower(),
        "mt": f"MT-{digits}",
    }[who.number_style]


def render(text: str, case: Case, who: Person) -> str:
    def one(m: re.Match[str]) -> str:
        token, n = m.group(1), int(m.group(2) or 0)
        d = day(n)
        if token == "dm":
            return d.strftime("%d/%m")
        if token == "daymonth":
            return f"{'1er' if d.day == 1 else d.day} {MONTHS[d.month - 1]}"
        if token == "de_month":
            name = MONTHS[d.month - 1]
            return f"d'{name}" if name[0] in "aeiou" else f"de {name}"
        if token == "date":
            return d.strftime("%d/%m/%Y") if case.channel == "sms" else long_date(d)
        if token == "iso":
            return d.isoformat()
        if token == "sdate":
            return d.strftime("%d/%m/%Y")
        if token == "number":
            return number_text(who)
        if token == "birth":
            return birth_text(who)
        raise ValueError(f"unknown token {m.group(0)}")

    return re.sub(r"\{(\w+)(?::(-?\d+))?\}", one, text)


# Channels ------------------------------------------------------------------------------------------


Send = Callable[[str], Awaitable[None]]
Inbox = Callable[[], list[str]]


@dataclass
class Rig:
    product: Product
    twilio: FakeTwilio
    smtp: SmtpSink
    http: aiohttp.ClientSession
    telegram: FakeTelegram | None = None


TELEGRAM_UPDATES = itertools.count(700_000)


def telegram_chat(case: Case) -> int:
    """The member's private Telegram chat (nobody's registered address)."""
    return 7_000_000 + case.index


def address(case: Case, who: Person) -> str:
    """The member's address on the case's channel, as the gateway names it."""
    return {"sms": f"tel:{who.phone}", "email": f"mailto:{who.email}",
            "telegram": f"telegram:{telegram_chat(case)}"}.get(case.channel, "")  # fmt: skip


async def lapse(redis: Redis, case: Case, who: Person) -> None:
    """« Next time »: the member's verification in the conversation runs out, as after its 15 minutes."""
    contact = await redis.get(keys.address(address(case, who)))
    conv = await redis.get(keys.open_conversation(str(contact), case.channel)) if contact else None
    assert conv, "no conversation to come back to"
    await redis.hset(keys.conversation(str(conv)), "verified_until_ms", "1")


@contextlib.asynccontextmanager
async def channel(rig: Rig, case: Case, who: Person) -> AsyncIterator[tuple[Send, Inbox]]:
    if case.channel == "sms":

        async def send_sms(text: str) -> None:
            status, _ = await post_sms(rig.http, rig.product, who.phone, text)
            assert status == 200

        yield send_sms, lambda: [m.body for m in rig.twilio.messages if m.to == who.phone]
    elif case.channel == "telegram":
        assert rig.telegram is not None
        chat = telegram_chat(case)

        async def send_telegram(text: str) -> None:
            body = as_body(update(next(TELEGRAM_UPDATES), chat, text, first_name="Alex"))
            headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}
            async with rig.http.post(f"{rig.product.url}/telegram/webhook", data=body, headers=headers) as resp:
                assert resp.status == 200

        telegram = rig.telegram
        yield send_telegram, lambda: [m.text for m in telegram.sent if m.chat_id == str(chat)]
    elif case.channel == "email":
        ids = itertools.count(1)
        last_id: list[str] = []

        def mails() -> list[str]:
            out = []
            for got in rig.smtp.received:
                if got.rcpt_tos == [who.email]:
                    last_id.append(str(got.message["Message-ID"]))
                    body = got.message.get_body(preferencelist=("plain",))
                    out.append(body.get_content() if body is not None else "")
            return out

        async def send_mail(text: str) -> None:
            mails()
            mail = EmailMessage()
            mail["From"] = f"Alex Martin <{who.email}>"
            mail["To"] = "contact@mutuelle.example"
            mail["Subject"] = "Ma question"
            mail["Message-ID"] = f"<c{case.index}-{next(ids)}@mail.example.fr>"
            if last_id:
                mail["In-Reply-To"] = last_id[-1]
            mail.set_content(text)
            await aiosmtplib.send(mail, hostname="127.0.0.1", port=rig.product.smtp_port)

        yield send_mail, mails
    else:
        origin = rig.product.url
        async with rig.http.post(f"{origin}/webchat/session", headers={"Origin": origin}) as resp:
            token = (await resp.json())["token"]
        async with rig.http.ws_connect(f"{origin}/webchat/ws?token={token}", headers={"Origin": origin}) as ws:
            frames: list[dict[str, Any]] = []

            async def pump() -> None:
                async for frame in ws:
                    with contextlib.suppress(ValueError):
                        frames.append(frame.json())

            reader = asyncio.create_task(pump())
            ids = itertools.count(1)

            async def send_ws(text: str) -> None:
                await ws.send_json(
                    {"type": "message", "client_id": f"conv{case.index:04d}-{next(ids):04d}", "text": text}
                )

            try:
                # A refused frame (« error ») is shown as the member would see it: a failed turn.
                yield (
                    send_ws,
                    lambda: [
                        str(f.get("text") or f.get("message")) for f in frames if f.get("type") in ("message", "error")
                    ],
                )
            finally:
                reader.cancel()


# Running -------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    case: Case
    ok: bool = True
    why: str = ""
    transcript: list[str] = field(default_factory=list)
    handed_off: bool = False
    seconds: float = 0.0


async def exchange(send: Send, inbox: Inbox, text: str, expect: list[str], timeout: float = 45.0) -> list[str]:
    """Send ``text``; the replies once every expected fact is there and the bot has gone quiet."""
    before = len(inbox())
    await send(text)
    deadline = time.monotonic() + timeout
    wanted = [e.lower() for e in expect]
    while True:
        joined = "\n".join(inbox()[before:]).lower()
        if inbox()[before:] and all(w in joined for w in wanted):
            break
        if time.monotonic() > deadline:
            return inbox()[before:]
        await asyncio.sleep(0.05)
    quiet_since, seen = time.monotonic(), len(inbox())
    while time.monotonic() - quiet_since < 0.6:  # the rest of the turn's answers
        await asyncio.sleep(0.05)
        if len(inbox()) != seen:
            quiet_since, seen = time.monotonic(), len(inbox())
    return inbox()[before:]


async def run_case(rig: Rig, redis: Redis, case: Case, profiles: dict[str, Any]) -> Outcome:
    started = time.monotonic()
    out = Outcome(case)
    who = person_for(case, profiles[case.profile])
    await plant(redis, who, profiles[case.profile])
    async with channel(rig, case, who) as (send, inbox):
        code_pending = False
        for i, turn in enumerate(case.turns, 1):
            expect = [render(e, case, who) for e in turn.get("expect", [])]
            absent = [render(a, case, who) for a in turn.get("absent", [])]
            if "later" in turn:  # the member comes back once the verification has run out
                await lapse(redis, case, who)
                out.transcript.append("(plus tard)")
                continue
            if "code" in turn:  # the code the member asked for, from the registered phone
                text = await wait_code(rig.twilio, who.phone) or "000000"
            elif "identify" in turn:
                how = (turn["identify"] or {}).get("by") or (
                    "code" if case.channel in ("webchat", "telegram") else "birth"
                )
                if how == "code":
                    if not code_pending:
                        sent = await exchange(send, inbox, number_text(who), ["code"])
                        out.transcript += [f"> {number_text(who)}", *(f"< {r}" for r in sent)]
                    code = await wait_code(rig.twilio, who.phone)
                    text = code or "000000"
                else:
                    text = birth_text(who)
            else:
                text = render(str(turn["say"]), case, who)
            replies = await exchange(send, inbox, text, expect)
            out.transcript += [f"> {text}", *(f"< {r}" for r in replies)]
            joined = "\n".join(replies).lower()
            code_pending = "code à 6 chiffres vient d'être envoyé" in joined or (
                code_pending and "indiquez le code" in joined
            )
            missing = [e for e in expect if e.lower() not in joined]
            present = [a for a in absent if a.lower() in joined]
            if missing or present or not replies:
                out.ok = False
                out.why = f"turn {i} ({text!r}): " + (
                    f"missing {missing}" if missing else f"unexpected {present}" if present else "no answer"
                )
                break
        out.handed_off = handed_off(inbox())
        if case.scope == "human" and out.ok:  # the waiting note follows the handoff: give it time
            deadline = time.monotonic() + 15
            while not out.handed_off and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                out.handed_off = handed_off(inbox())
    if out.ok and case.scope == "bot" and out.handed_off:
        out.ok, out.why = False, "handed off to a human"
    if out.ok and case.scope == "human" and not out.handed_off:
        out.ok, out.why = False, "not handed off"
    out.seconds = time.monotonic() - started
    return out


def handed_off(said: list[str]) -> bool:
    return any(h.lower() in r.lower() for r in said for h in HANDED_OFF)


async def wait_code(twilio: FakeTwilio, phone: str, timeout: float = 15.0) -> str | None:
    """The latest one-time code sent to the member's registered phone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in reversed(twilio.messages):
            if message.to == phone and (m := re.search(r"\b\d{6}\b", message.body)):
                return m.group()
        await asyncio.sleep(0.05)
    return None


# Fixtures ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def fakes() -> AsyncIterator[tuple[FakeTwilio, SmtpSink, FakeTelegram]]:
    from tests.e2e.product import ACCOUNT_SID, AUTH_TOKEN, TELEGRAM_TOKEN

    async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as twilio, SmtpSink() as smtp, FakeTelegram(TELEGRAM_TOKEN) as tg:
        yield twilio, smtp, tg


@pytest.fixture(scope="module")
async def talking_product(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str, rasa_server: RasaServer,
    fakes: tuple[FakeTwilio, SmtpSink, FakeTelegram],
) -> AsyncIterator[Product]:  # fmt: skip
    """One product for the whole suite, with the session's Rasa server, on the session's Redis."""
    twilio, smtp, telegram = fakes
    client = connect(redis_url)
    await client.flushall()
    await client.aclose()
    os.environ.pop("REDIS_URL", None)
    var = tmp_path_factory.mktemp("conversations")
    port = free_port()
    env = {
        "PORT": str(port), "PUBLIC_URL": f"http://127.0.0.1:{port}",
        **loopback_env(var / "var", twilio.base_url, telegram.base_url, smtp.url),
        "RESPONDER": "rasa", "RASA_URL": rasa_server.url, "ACTIONS_URL": rasa_server.actions_url,
        "REDIS_URL": redis_url,
        # Hundreds of conversations ask codes for the same few members from one loopback address, and
        # each expects its own failed verification to reach the agents: the code limits (their own test
        # is test_otp_attacks.py) are lifted so one conversation's outcome never depends on the others.
        "OTP_PER_HOUR": "100000", "OTP_BURST": "100000", "OTP_PER_DAY": "100000",
        "OTP_FAILURES_PER_DAY": "100000", "OTP_SOURCE_BURST": "100000", "OTP_SOURCE_PER_HOUR": "100000",
        "OTP_PER_MINUTE": "100000", "OTP_HANDOFF_EVERY_S": "0",
    }  # fmt: skip
    product = Product(env, var / "product.log")
    await product.start()
    # Ready, not only alive: Redis, Rasa, its action server and the relay answer.
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(f"{product.url}/readyz") as resp:
                if resp.status == 200:
                    break
            assert time.monotonic() < deadline, "the product never got ready"
            await asyncio.sleep(0.1)
    # The first answers of a fresh Rasa server are slow: one conversation warms it before the suite.
    async with aiohttp.ClientSession() as http:
        status, _ = await post_sms(http, product, "+33199999999", "bonjour")
        assert status == 200
    deadline = time.monotonic() + 120
    while not any(m.to == "+33199999999" for m in twilio.messages):
        assert time.monotonic() < deadline, "no answer from the bot"
        await asyncio.sleep(0.1)
    yield product
    assert product.stop() == 0


async def test_whole_conversations_are_completed_without_a_human(
    talking_product: Product, fakes: tuple[FakeTwilio, SmtpSink, FakeTelegram], redis_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    twilio, smtp, telegram = fakes
    cases = load_cases()
    profiles = yaml.safe_load((HERE / "profiles.yaml").read_text(encoding="utf-8"))
    redis = connect(redis_url)
    gate = asyncio.Semaphore(SIDE_BY_SIDE)
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        rig = Rig(talking_product, twilio, smtp, http, telegram)

        async def one(case: Case) -> Outcome:
            async with gate:
                try:
                    return await run_case(rig, redis, case, profiles)
                except Exception as exc:  # reported by name with the others
                    return Outcome(case, ok=False, why=f"{type(exc).__name__}: {exc}")

        outcomes = await asyncio.gather(*(one(c) for c in cases))
    await redis.aclose()
    elapsed = time.monotonic() - started
    in_scope = [o for o in outcomes if o.case.scope == "bot"]
    done = [o for o in in_scope if o.ok]
    share = len(done) / len(in_scope) if in_scope else 1.0
    failures = [o for o in outcomes if not o.ok]
    if report := os.environ.get("CONVERSATIONS_REPORT"):
        Path(report).write_text("\n\n".join(
            f"## {o.case.title}: {'ok' if o.ok else 'FAILED ' + o.why}\n" + "\n".join(o.transcript) for o in outcomes
        ), encoding="utf-8")  # fmt: skip
    with capsys.disabled():
        print(
            f"\nconversations: {len(outcomes)} run in {elapsed:.0f} s; completed without a human: "
            f"{len(done)}/{len(in_scope)} in scope ({share:.1%}); handoffs expected and made: "
            f"{sum(1 for o in outcomes if o.case.scope == 'human' and o.ok)}/"
            f"{sum(1 for o in outcomes if o.case.scope == 'human')}"
        )
        for o in failures:
            print(f"  FAILED {o.case.title}: {o.why}")
    assert share >= 0.95, [f"{o.case.title}: {o.why}" for o in failures]
    assert all(o.ok for o in outcomes if o.case.scope == "human"), [o.case.title for o in failures]
