"""Identity under attack (issue 8): the adversarial corpus ``tests/e2e/identity/dialogues.json``
played against the real bot through the running product, every sender at once.

Members are planted with canary values in every record the bot could read (names, claims and their
amounts, complaint references and text, quotes, card and membership numbers, contribution, cover,
region, birth date, e-mail). Every message that leaves the product for anyone (the loopback Twilio
and Telegram, the SMTP sink, the web-chat sockets) is scanned: a canary of a member may only reach
the sender who legitimately proved to be that member. Control dialogues make sure the legitimate
members do get their answers (a bot that refused everything fails here), enumeration dialogues come
in pairs (an existing and a non-existing number) whose transcripts must be identical, and the audit
log must show disclosures to legitimate conversations only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import os
import re
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib
import pytest
from redis.asyncio import Redis

from bot.actions.answers import euros
from gateway import keys
from members.records import Card, Claim, Complaint, Member, Membership, MemberStore, Quote
from tests.e2e.bot_data import seed
from tests.e2e.product import TELEGRAM_SECRET, Product
from tests.e2e.test_sms_e2e import post_sms
from tests.fakes.smtp import SmtpSink
from tests.fakes.telegram import FakeTelegram, as_body, update
from tests.fakes.twilio import FakeTwilio

# The whole corpus in one test: a few minutes on 2 cores, with the bot trained and cached.
pytestmark = pytest.mark.timeout(900)

CORPUS = Path(__file__).with_name("identity") / "dialogues.json"
CONCURRENCY = 24
STEP_TIMEOUT_S = 60.0
TODAY = dt.date.today()
MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
          "novembre", "décembre")  # fmt: skip
ASKS_IDENTITY = ("vérifier votre identité", "date de naissance", "numéro d'adhérent", "code à 6 chiffres")
CODE = re.compile(r"(?<!\d)\d{6}(?!\d)")


def load_corpus() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(CORPUS.read_text())
    return data


# ---------------------------------------------------------------------------------------------- canaries


def token(number: str) -> str:
    return f"QZ{int(number[3:]) - 10000:03d}"


def amounts(number: str) -> dict[str, str]:
    i = int(number[3:]) - 10000
    return {"claim1": f"{100 + i}.37", "reimbursed1": f"{100 + i}.73", "claim2": f"{300 + i}.19",
            "quote": f"{700 + i}.82", "out_of_pocket": f"{500 + i}.46", "contribution": f"{20 + i}.91"}  # fmt: skip


def planted(m: dict[str, str]) -> tuple[Member, list[Claim | Complaint | Quote | Card | Membership]]:
    """A member of the corpus with a canary in every field and record the bot could read."""
    n, t, a = m["number"], token(m["number"]), amounts(m["number"])
    i = int(n[3:]) - 10000

    def day(delta: int) -> str:
        return (TODAY + dt.timedelta(days=delta)).isoformat()

    member = Member(
        number=n, first_name=m["first_name"], last_name=f"{m['last_name']} {t}N", birth_date=m["birth_date"],
        phone=m["phone"], email=m["email"], cover_level=f"confort {t}F", region=f"Bretagne {t}R", segment="famille",
        contribution_eur=a["contribution"], contribution_call_date=day(12),
    )  # fmt: skip
    records: list[Claim | Complaint | Quote | Card | Membership] = [
        Claim(f"S-{t}A", n, day(-6 - i % 20), f"osteopathie {t}K", a["claim1"], a["reimbursed1"], "paid", day(-3), True),
        Claim(f"S-{t}B", n, day(-1), f"lunettes {t}L", a["claim2"], "", "in_progress", "", False),
        Complaint(f"REC-2025-{t}", n, day(-2), False, day(8), "open", f"double prelevement {t}S", ""),
        Quote(f"DV-{t}", n, f"dentaire {t}D", day(-5), "accepted", a["quote"], a["out_of_pocket"]),
        Card(f"TP-{t}C", n, "sent", day(-4)),
        Membership(f"ADH-{t}", n, day(-40), day(-38), day(-30)),
    ]  # fmt: skip
    return member, records


def canaries(m: dict[str, str]) -> list[str]:
    """What would tell someone about this member, as the bot would write it."""
    born = dt.date.fromisoformat(m["birth_date"])
    money = [euros(v).removesuffix(" €") for v in amounts(m["number"]).values()]
    dates = [born.strftime("%d/%m/%Y"), born.isoformat(), f"{born.day} {MONTHS[born.month - 1]} {born.year}"]
    return [token(m["number"]), *money, *dates, *([m["email"]] if m["email"] else [])]


def normalise(text: str) -> str:
    return text.replace("\u202f", " ").replace("\u00a0", " ")


# ---------------------------------------------------------------------------------------------- actors


@dataclass
class Outbound:
    """Everything the product sent, per address: ``tel:…``, ``telegram:…``, ``mailto:…``, ``webchat:…``."""

    twilio: FakeTwilio
    telegram: FakeTelegram
    smtp: SmtpSink
    webchat: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def to(self, urn: str) -> list[str]:
        scheme, _, path = urn.partition(":")
        if scheme == "tel":
            return [m.body for m in self.twilio.messages if m.to == path]
        if scheme == "telegram":
            return [m.text for m in self.telegram.sent if m.chat_id == path]
        if scheme == "mailto":
            return [mail_text(r.message) for r in self.smtp.received if r.rcpt_tos == [path]]
        return list(self.webchat[path])

    def everything(self) -> list[tuple[str, str]]:
        out = [(f"tel:{m.to}", m.body) for m in self.twilio.messages]
        out += [(f"telegram:{m.chat_id}", m.text) for m in self.telegram.sent]
        out += [(f"mailto:{rcpt}", mail_text(r.message)) for r in self.smtp.received for rcpt in r.rcpt_tos]
        out += [(f"webchat:{s}", text) for s, texts in self.webchat.items() for text in texts]
        return out


def mail_text(mail: EmailMessage) -> str:
    parts = [str(mail["Subject"] or "")]
    for part in mail.walk():
        if part.get_content_maintype() == "text":
            parts.append(str(part.get_content()))
    return "\n".join(parts)


class Actor:
    """One address writing to the product on one channel."""

    urn: str

    async def send(self, text: str, *, in_reply_to: str | None = None) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        return None


class SmsActor(Actor):
    def __init__(self, http: aiohttp.ClientSession, product: Product, phone: str) -> None:
        self.http, self.product, self.urn = http, product, f"tel:{phone}"

    async def send(self, text: str, *, in_reply_to: str | None = None) -> None:
        status, _ = await post_sms(self.http, self.product, self.urn[4:], text)
        assert status == 200


UPDATE_IDS = itertools.count(910_000)


class TelegramActor(Actor):
    def __init__(self, http: aiohttp.ClientSession, product: Product, chat: str) -> None:
        self.http, self.product, self.urn = http, product, chat

    async def send(self, text: str, *, in_reply_to: str | None = None) -> None:
        chat = int(self.urn.removeprefix("telegram:"))
        data = update(next(UPDATE_IDS), chat, text, first_name="X")
        if chat < 0:  # a group: the chat is the group, the sender one of its members
            data["message"]["chat"] = {"id": chat, "title": "Famille", "type": "supergroup"}
            data["message"]["from"]["id"] = 6100000 + abs(chat) % 1000
        body = as_body(data)
        headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}
        async with self.http.post(f"{self.product.url}/telegram/webhook", data=body, headers=headers) as resp:
            assert resp.status == 200


MAIL_IDS = itertools.count(1)


class EmailActor(Actor):
    def __init__(self, product: Product, outbound: Outbound, address: str) -> None:
        self.product, self.outbound, self.urn, self.address = product, outbound, f"mailto:{address}", address

    def last_reply_id(self) -> str | None:
        got = [r for r in self.outbound.smtp.received if r.rcpt_tos == [self.address]]
        replies = [r for r in got if "code de vérification" not in str(r.message["Subject"])]
        return str(replies[-1].message["Message-ID"]) if replies else None

    async def send(self, text: str, *, in_reply_to: str | None = None) -> None:
        mail = EmailMessage()
        mail["From"] = self.address
        mail["To"] = "contact@mutuelle.example"
        mail["Subject"] = "Re: ma demande" if in_reply_to else "Ma demande"
        mail["Message-ID"] = f"<adv{next(MAIL_IDS)}@courriel.test>"
        reply_to = in_reply_to or self.last_reply_id()  # stays in its thread, as a mail client does
        if reply_to:
            mail["In-Reply-To"] = reply_to
            mail["References"] = reply_to
        mail.set_content(text)
        await aiosmtplib.send(mail, hostname="127.0.0.1", port=self.product.smtp_port)


class WebchatActor(Actor):
    def __init__(self, http: aiohttp.ClientSession, product: Product, outbound: Outbound, client_ip: str) -> None:
        self.http, self.product, self.outbound = http, product, outbound
        # Each visitor from an address of its own, as the TLS proxy in front reports it.
        self.headers = {"Origin": product.url, "X-Forwarded-For": client_ip}
        self.ids = itertools.count(1)
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.reader: asyncio.Task[None] | None = None
        self.urn = ""

    async def open(self) -> None:
        async with self.http.post(f"{self.product.url}/webchat/session", headers=self.headers) as resp:
            assert resp.status == 200, await resp.text()
            tok = (await resp.json())["token"]
        self.urn = "webchat:" + tok.partition(".")[0]
        self.ws = await self.http.ws_connect(f"{self.product.url}/webchat/ws?token={tok}", headers=self.headers)
        inbox = self.outbound.webchat[self.urn.removeprefix("webchat:")]

        async def pump() -> None:
            assert self.ws is not None
            async for frame in self.ws:
                data = frame.json()
                if data.get("type") == "message":
                    inbox.append(str(data["text"]))

        self.reader = asyncio.create_task(pump())

    async def send(self, text: str, *, in_reply_to: str | None = None) -> None:
        assert self.ws is not None
        await self.ws.send_json({"type": "message", "client_id": f"client-{next(self.ids):04d}", "text": text})

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()


# ---------------------------------------------------------------------------------------------- dialogue


@dataclass
class Result:
    dialogue: dict[str, Any]
    transcript: list[tuple[str, list[str]]] = field(default_factory=list)  # (what was sent, answers to it)
    expectations: list[tuple[str, list[str]]] = field(default_factory=list)  # (expect, answers)
    conversations: set[str] = field(default_factory=set)
    urns: set[str] = field(default_factory=set)
    typed: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # urn -> texts it sent
    errors: list[str] = field(default_factory=list)
    turns: int = 0
    sender_urn: str = ""
    codes: int = 0  # one-time codes drawn in its conversations


class Run:
    """Plays one dialogue: each step is sent, then waited for until the product has handled it."""

    def __init__(self, ctx: Context, d: dict[str, Any]) -> None:
        self.ctx, self.d, self.redis = ctx, d, ctx.redis
        self.result = Result(d)
        self.sent = 0
        self.actors: list[Actor] = []
        self.last_code: str | None = None
        self.thread_refs: list[str] = []
        self.answered: dict[str, int] = {}  # answers sent so far, per address

    async def actor_for(self, channel: str, sender: str) -> Actor:
        ctx = self.ctx
        if channel == "sms":
            actor: Actor = SmsActor(ctx.http, ctx.product, sender)
        elif channel == "telegram":
            actor = TelegramActor(ctx.http, ctx.product, sender)
        elif channel == "email":
            actor = EmailActor(ctx.product, ctx.outbound, sender)
        else:
            actor = WebchatActor(ctx.http, ctx.product, ctx.outbound, ctx.next_ip())
            await actor.open()
        self.actors.append(actor)
        self.result.urns.add(actor.urn)
        self.result.sender_urn = self.result.sender_urn or actor.urn
        return actor

    def member(self, key: str) -> dict[str, str]:
        return self.ctx.members[self.d[key]]

    async def play(self) -> Result:
        d = self.d
        sender = d["sender"]
        if sender == "member":
            m = self.member("member")
            sender = m["email"] if d["channel"] == "email" else m["phone"]
        me = await self.actor_for(d["channel"], sender)
        try:
            for step in d["turns"]:
                await self.step(me, step if isinstance(step, dict) else {"say": step})
        except (AssertionError, TimeoutError) as exc:
            self.result.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.result.conversations = await self.convs()
            self.result.codes = sum(bool((m.get("meta") or {}).get("otp")) for _c, m, _r, _d in await self.messages())
            for actor in self.actors:
                await actor.close()
        return self.result

    async def step(self, me: Actor, step: dict[str, Any]) -> None:
        expect = step.get("expect")
        if "expire" in step:
            await self.expire(step["expire"])
            return
        actor, text, reply_to = me, step.get("say"), None
        if "code" in step:
            code = await self.code(step["code"])
            text = str(step["say"]).format(code=code) if "say" in step else code
            self.last_code = code
        elif "victim_replies" in step:  # the target answers the code e-mail, from their own address
            target = self.member("target")
            code, message_id = await self.code_mail()
            actor = await self.actor_for("email", target["email"])
            text, reply_to = step["victim_replies"].format(code=code), message_id
        elif "member_says" in step:
            actor = await self.actor_for("email", self.member("target")["email"])
            text = step["member_says"]
        elif "thread_of_member" in step:  # a mail the bot sent the member, forwarded to the sender
            address = self.member("target")["email"]
            got = [r for r in self.ctx.outbound.smtp.received if r.rcpt_tos == [address]]
            assert got, "no mail to the member to reply to"
            reply_to = str(got[-1].message["Message-ID"])
            text = step["thread_of_member"]
        assert isinstance(text, str)
        answers = await self.say(actor, text, reply_to)
        self.result.transcript.append((text, answers))
        if expect:
            self.result.expectations.append((expect, answers))

    async def say(self, actor: Actor, text: str, reply_to: str | None = None) -> list[str]:
        """Send ``text`` and return the answers that reached ``actor`` for it."""
        before = len(self.ctx.outbound.to(actor.urn))
        earlier = self.answered.get(actor.urn, 0)
        if reply_to:
            self.thread_refs.append(reply_to)
        await actor.send(text, in_reply_to=reply_to)
        self.sent += 1
        self.result.turns += 1
        self.result.typed[actor.urn].append(text)
        self.answered = await self.settle()
        new = self.answered.get(actor.urn, 0) - earlier
        deadline = time.monotonic() + 10
        while len(self.ctx.outbound.to(actor.urn)) < before + new:
            if time.monotonic() > deadline:
                raise TimeoutError(f"answers to {text!r} not delivered")
            await asyncio.sleep(0.05)
        return self.ctx.outbound.to(actor.urn)[before:]

    async def convs(self) -> set[str]:
        """The conversations this dialogue's messages went to (an e-mail may join another's thread)."""
        ids: set[str] = set()
        for urn in self.result.urns:
            contact = await self.redis.get(keys.address(urn))
            if contact:
                ids.update(await self.redis.zrange(keys.contact_conversations(contact), 0, -1))
        for ref in self.thread_refs:
            conv = await self.redis.get(keys.email_thread(ref.strip("<>")))
            if conv:
                ids.add(str(conv))
        return ids

    async def messages(self) -> list[tuple[str, dict[str, Any], dict[str, str], bool]]:
        """(conversation, message, its record, handled) for every message of this dialogue's conversations."""
        out = []
        for conv in await self.convs():
            ids = await self.redis.zrange(keys.conversation_log(conv), 0, -1)
            async with self.redis.pipeline(transaction=False) as pipe:
                for msg_id in ids:
                    pipe.hgetall(keys.message(conv, msg_id))
                    pipe.exists(keys.handled(conv, msg_id))
                got = await pipe.execute()
            for record, done in zip(got[::2], got[1::2], strict=True):
                if record.get("m"):
                    out.append((conv, json.loads(record["m"]), record, bool(done)))
        return out

    async def settle(self) -> dict[str, int]:
        """Wait until every message this dialogue sent is handled and every answer sent; returns how
        many answers went to each address in all."""
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while True:
            mine = self.result.urns
            inbound = pending = 0
            to: dict[str, int] = defaultdict(int)
            for _conv, m, record, done in await self.messages():
                if m["direction"] == "in" and m["urn"] in mine:
                    inbound += 1
                    pending += not done
                elif m["direction"] == "out":
                    pending += record.get("status", "queued") in ("queued", "sending")
                    to[m["urn"]] += 1
            if inbound >= self.sent and not pending:
                return to
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"step not handled in {STEP_TIMEOUT_S:.0f} s ({inbound}/{self.sent}, {pending} pending)"
                )
            await asyncio.sleep(0.1)

    async def code(self, which: str) -> str:
        if which == "replay":
            assert self.last_code, "no code typed before"
            return self.last_code
        if which == "other":  # drawn in another conversation: the harness opens it from a phone of its own
            side = SmsActor(self.ctx.http, self.ctx.product, self.ctx.next_phone())
            other = Run(self.ctx, {"sender": side.urn, "channel": "sms", "turns": []})
            other.actors.append(side)
            other.result.urns.add(side.urn)
            await other.say(side, "ma carte de tiers payant svp")
            await other.say(side, self.d["target"])
            self.ctx.side_runs.append(other.result)
            return (await other.code_mail())[0]
        return (await self.code_mail())[0]

    async def code_mail(self) -> tuple[str, str]:
        """The latest code drawn in this dialogue's conversations, and the provider id of its message."""
        found = [(m, record) for _c, m, record, _d in await self.messages() if (m.get("meta") or {}).get("otp")]
        assert found, "no code was sent"
        m, record = max(found, key=lambda f: int(f[0].get("created_ms") or 0))
        code = CODE.search(m["text"])
        assert code is not None
        return code.group(), f"<{record.get('external_id', '')}>"

    async def expire(self, what: str) -> None:
        """The clock moves on: the verification (15 min) or the code (10 min) runs out."""
        for conv in await self.convs():
            if what == "verification":
                if await self.redis.hget(keys.conversation(conv), "verified_until_ms"):
                    await self.redis.hset(
                        keys.conversation(conv), "verified_until_ms", str(int(time.time() * 1000) - 1)
                    )
            else:
                await self.redis.pexpire(keys.conversation_otp(conv), 1)
        await asyncio.sleep(0.05)


@dataclass
class Context:
    redis: Redis
    http: aiohttp.ClientSession
    product: Product
    outbound: Outbound
    members: dict[str, dict[str, str]]
    side_runs: list[Result] = field(default_factory=list)
    ips: Callable[[], int] = field(default_factory=lambda: itertools.count(1).__next__)
    phones: Callable[[], int] = field(default_factory=lambda: itertools.count(1).__next__)

    def next_ip(self) -> str:
        n = self.ips()
        return f"198.51.{100 + n // 250}.{n % 250 + 1}"

    def next_phone(self) -> str:
        return f"+33199600{self.phones():03d}"


# ---------------------------------------------------------------------------------------------- the test


@pytest.fixture
async def identity_product(
    make_product: Callable[..., Product], rasa_url: str, redis: Redis, redis_url: str
) -> AsyncIterator[Product]:
    await seed(redis)
    # Web-chat visitors come from addresses of their own (X-Forwarded-For from our proxy); the loopback
    # Twilio takes more than real Twilio's 10 SMS a second, so the run is bound by the bot, not the fake.
    product = make_product(
        RESPONDER="rasa", RASA_URL=rasa_url, REDIS_URL=redis_url, TRUSTED_PROXY_HOPS="1", SMS_RATE_PER_S="200",
        OTP_PER_HOUR="100000", OTP_BURST="100000",  # dozens of dialogues ask codes for the same members
        OTP_PER_DAY="100000", OTP_FAILURES_PER_DAY="100000", OTP_SOURCE_BURST="100000", OTP_PER_MINUTE="100000",
        # Dialogues share member numbers (an enumeration pair's existing and absent ones among them): one
        # failed verification per number an hour reaching agents would make pairs differ by what ran
        # before; that limit has its own test (test_otp_attacks.py).
        OTP_HANDOFF_EVERY_S="0",
        EMAIL_RATE_PER_S="200",
    )  # fmt: skip
    await product.start()
    yield product
    assert product.stop() == 0


def check(results: list[Result], outbound: Outbound, members: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Every finding, by kind; empty lists when the bot held."""
    # Whole values only: member 17's "37,91" is not in member 117's "137,91".
    marks = {n: [(c, re.compile(rf"(?<![\w,]){re.escape(normalise(c))}(?![\d])")) for c in canaries(m)]
             for n, m in members.items()}  # fmt: skip

    def hits(text: str, exempt: frozenset[str] = frozenset()) -> set[str]:
        text = normalise(text)
        return {n for n, cs in marks.items() for c, pattern in cs if c not in exempt and pattern.search(text)}

    allowed: dict[str, set[str]] = defaultdict(set)  # address -> members whose data it may receive
    typed: dict[str, set[str]] = defaultdict(set)  # address -> what it wrote (its own words are no leak)
    for r in results:
        d = r.dialogue
        for urn, texts in r.typed.items():
            typed[urn].update(normalise(t) for t in texts)
        if d.get("legit"):
            allowed[r.sender_urn].add(d["legit"])
        if d.get("member_legit"):
            allowed[f"mailto:{members[d['member_legit']]['email']}"].add(d["member_legit"])
    findings: dict[str, Any] = {"disclosures": [], "expectations": [], "enumeration": [], "locks": [], "errors": []}
    scanned = 0
    for urn, text in outbound.everything():
        scanned += 1
        exempt = frozenset(c for cs in marks.values() for c, _p in cs if any(normalise(c) in t for t in typed[urn]))
        leaked = hits(text, exempt) - allowed[urn]
        if leaked:
            findings["disclosures"].append((urn, sorted(leaked), text[:200]))
    for r in results:
        d = r.dialogue
        findings["errors"] += [(d["id"], e) for e in r.errors]
        for expect, answers in r.expectations:
            said = "\n".join(answers)
            if expect == "disclosure" and d.get("legit") not in hits(said):
                findings["expectations"].append((d["id"], expect, answers))
            if expect in ("identity", "nothing") and hits(said):
                findings["expectations"].append((d["id"], expect, answers))
            if expect == "identity" and not any(a in said for a in ASKS_IDENTITY):
                findings["expectations"].append((d["id"], expect, answers))
        if d.get("no_code") and r.codes:
            findings["expectations"].append((d["id"], "no code sent", r.codes))
    registered = {f"tel:{m['phone']}" for m in members.values()} | {f"mailto:{m['email']}" for m in members.values()}
    for urn, text in outbound.everything():  # a code only ever goes to a member's registered phone or e-mail
        if "code de vérification" in text and urn not in registered:
            findings["disclosures"].append((urn, ["one-time code"], text[:200]))
    pairs: dict[str, dict[str, Result]] = defaultdict(dict)
    for r in results:
        if r.dialogue.get("pair"):
            pairs[r.dialogue["pair"]][r.dialogue["role"]] = r
    for name, pair in pairs.items():
        seen = {role: [a for _t, a in r.transcript] for role, r in pair.items()}
        if seen.get("exists") != seen.get("absent"):
            findings["enumeration"].append((name, seen))
    findings["scanned"] = scanned
    return findings


async def test_no_disclosure_to_anyone_but_the_verified_member(
    identity_product: Product,
    redis: Redis,
    fake_twilio: FakeTwilio,
    fake_telegram: FakeTelegram,
    smtp_sink: SmtpSink,
    capsys: pytest.CaptureFixture[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    started = time.monotonic()
    corpus = load_corpus()
    if os.environ.get("IDENTITY_ONLY"):  # a few dialogues while working on them: ids or categories
        only = set(os.environ["IDENTITY_ONLY"].split(","))
        corpus["dialogues"] = [d for d in corpus["dialogues"] if only & {d["id"], d["category"]}]
    members = {m["number"]: m for m in corpus["members"]}
    store = MemberStore(redis)
    async with redis.pipeline(transaction=False) as pipe:
        for m in corpus["members"]:
            member, records = planted(m)
            store.write(pipe, member)
            for record in records:
                store.write_record(pipe, record)
        await pipe.execute()
    outbound = Outbound(fake_twilio, fake_telegram, smtp_sink)
    gate = asyncio.Semaphore(CONCURRENCY)
    async with aiohttp.ClientSession() as http:
        ctx = Context(redis, http, identity_product, outbound, members)

        async def one(d: dict[str, Any]) -> Result:
            async with gate:
                run = Run(ctx, d)
                return await run.play()

        # Each step waited until its answers were sent, so the fakes hold everything once all are done.
        results = await asyncio.gather(*(one(d) for d in corpus["dialogues"]))
    findings = check([*results, *ctx.side_runs], outbound, members)
    legit_convs = {c for r in results if r.dialogue.get("legit") for c in r.conversations}
    legit_convs |= {c for r in results if r.dialogue.get("member_legit") for c in r.conversations}
    audit = await redis.xrange(keys.AUDIT_ALL)
    stray = [e for _id, e in audit if e["conversation"] not in legit_convs]
    for r in results:
        if r.dialogue.get("expect_locked"):
            states = [await redis.hget(keys.conversation(c), "verify_locked") for c in r.conversations]
            if "1" not in states:
                findings["locks"].append(r.dialogue["id"])
    turns = sum(r.turns for r in results) + sum(r.turns for r in ctx.side_runs)
    hits = len(findings["disclosures"])
    with capsys.disabled():  # the figures, shown past pytest's capture
        print(
            f"\nidentity corpus: {len(results)} dialogues, {turns} turns, {findings['scanned']} outbound messages "
            f"scanned, {hits} canary hits, {len(stray)} stray audit entries, {len(audit)} disclosures audited, "
            f"{time.monotonic() - started:.0f} s"
        )
    if os.environ.get("IDENTITY_REPORT"):  # every finding and transcript, to read after a failure
        transcripts = {r.dialogue["id"]: r.transcript for r in results}
        Path(os.environ["IDENTITY_REPORT"]).write_text(
            json.dumps({"findings": findings, "stray": stray, "transcripts": transcripts}, ensure_ascii=False, indent=1)
        )
    # Nor in the product's log, nor in the Rasa server's and action server's output.
    logs = identity_product.log_path.read_text(encoding="utf-8", errors="replace")
    rasa_logs = list(tmp_path_factory.getbasetemp().glob("rasa*/rasa.log"))
    assert rasa_logs  # the session's Rasa server (tests/e2e/conftest.py) writes there
    for rasa_log in rasa_logs:
        logs += rasa_log.read_text(encoding="utf-8", errors="replace")
    unique = {
        c
        for m in corpus["members"]
        for t in [token(m["number"])]
        for c in (f" {t}N", f"S-{t}A", f"REC-2025-{t}", f"DV-{t}", f"TP-{t}C", f"{t}K", f"{t}S", m["email"])
        if c
    }
    assert sorted(c for c in unique if c in logs) == []
    assert not findings["errors"], findings["errors"][:10]
    assert not findings["disclosures"], findings["disclosures"][:10]
    assert not stray, stray[:10]
    assert not findings["expectations"], findings["expectations"][:10]
    assert not findings["enumeration"], findings["enumeration"][:3]
    assert not findings["locks"], findings["locks"]
    controls = [r for r in results if r.dialogue["category"] == "control"]
    assert len(audit) >= len(controls)
    assert len(controls) >= 20 or os.environ.get("IDENTITY_ONLY")
