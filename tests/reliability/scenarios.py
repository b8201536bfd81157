"""The reliability scenarios, each returning its figures. Tests run them with short counts and assert
on the figures; ``bench/chaos.py`` runs them with long counts and prints the same figures as a table.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import aiohttp
import aiosmtplib

from gateway import keys
from gateway.envelope import inbound
from tests.e2e.product import AUTH_TOKEN, OUR_NUMBER, TELEGRAM_SECRET
from tests.fakes.telegram import as_body, update
from tests.fakes.twilio import inbound_params, new_sid, signed_inbound
from tests.reliability.rig import Rig

SMS_PATH = "/sms/twilio/inbound"


@dataclass
class Figures:
    """What a scenario did and what came out of it; ``lost`` and ``duplicated`` must be 0."""

    scenario: str
    sent: int = 0  # deliveries attempted by the providers (copies included)
    unique: int = 0  # distinct messages among them
    stored: int = 0  # distinct messages the product holds
    replies: int = 0  # answers the providers received
    lost: int = 0
    duplicated: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    answers_5xx: int = 0
    seconds: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        details = "; ".join(f"{k} {v}" for k, v in self.notes.items())
        return {
            "scenario": self.scenario,
            "sent": self.sent,
            "unique": self.unique,
            "stored": self.stored,
            "replies": self.replies,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "faults": ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())) or "-",
            "5xx": self.answers_5xx,
            "s": round(self.seconds, 1),
            "details": details or "-",
        }


# Inbound deliveries as each provider makes them -------------------------------------------------
async def post_sms(rig: Rig, member: str, text: str, sid: str) -> int:
    params = inbound_params(member, text, to=OUR_NUMBER, sid=sid)
    headers, body = signed_inbound(rig.product.url, SMS_PATH, AUTH_TOKEN, params)
    async with rig.http.post(rig.product.url + SMS_PATH, data=body, headers=headers) as resp:
        await resp.read()
        return resp.status


async def post_telegram(rig: Rig, update_id: int, chat_id: int, text: str) -> int:
    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}
    body = as_body(update(update_id, chat_id, text))
    async with rig.http.post(f"{rig.product.url}/telegram/webhook", data=body, headers=headers) as resp:
        await resp.read()
        return resp.status


async def send_mail(rig: Rig, sender: str, text: str, message_id: str) -> int:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = sender, "contact@mutuelle.example", "Ma demande"
    mail["Message-ID"] = f"<{message_id}>"
    mail.set_content(text)
    try:
        await aiosmtplib.send(mail, hostname="127.0.0.1", port=rig.product.smtp_port, timeout=30)
    except aiosmtplib.SMTPResponseException as exc:
        return exc.code
    return 250


# 1. Redelivery ----------------------------------------------------------------------------------------
async def redelivery(rig: Rig, copies: tuple[int, ...] = (3, 10), spread_s: float = 5.0) -> Figures:
    """Every provider's inbound delivery made ``n`` times (half at once, the rest spread over
    ``spread_s``), as a provider retrying after a timeout does → one stored message, one reply."""
    fig = Figures("redelivery")
    started = time.monotonic()
    rng = random.Random(7)
    jobs: list[tuple[str, Any]] = []  # (address, a coroutine factory for one delivery)
    for n in copies:
        for channel in ("sms", "telegram", "email"):
            tag = f"{n:02d}{len(jobs):03d}"
            if channel == "sms":
                member, sid = f"+336399{tag}", new_sid("SM")
                address, once = (
                    f"tel:{member}",
                    (lambda m=member, s=sid: post_sms(rig, m, "Où en est mon dossier ?", s)),
                )
            elif channel == "telegram":
                chat, update_id = int(f"52{tag}"), int(f"91{tag}")
                address, once = f"telegram:{chat}", (lambda c=chat, u=update_id: post_telegram(rig, u, c, "Bonjour"))
            else:
                sender, mid = f"r{tag}@example.fr", f"redelivery-{tag}@example.fr"
                address, once = f"mailto:{sender}", (lambda s=sender, i=mid: send_mail(rig, s, "Bonjour", i))
            jobs.extend((address, once) for _ in range(n))
            fig.unique += 1

    async def deliver(address: str, once: Any, at: float) -> int:
        await asyncio.sleep(at)
        return int(await once())

    by_address: Counter[str] = Counter(a for a, _ in jobs)
    plan = [(a, f, 0.0 if i % 2 == 0 else rng.uniform(0, spread_s)) for i, (a, f) in enumerate(jobs)]
    statuses = await asyncio.gather(*(deliver(a, f, at) for a, f, at in plan))
    fig.sent = len(jobs)
    fig.answers_5xx = sum(1 for s in statuses if 500 <= s < 600)
    await rig.quiet()
    stored = Counter(m.urn for m in await rig.inbound() if m.urn in by_address)
    replies = rig.replies()
    fig.stored = sum(1 for a in by_address if stored[a] >= 1)
    fig.replies = sum(replies[a] for a in by_address)
    fig.lost = sum(1 for a in by_address if stored[a] == 0 or replies[a] == 0)
    fig.duplicated = sum(max(0, stored[a] - 1) + max(0, replies[a] - 1) for a in by_address)
    fig.notes["refused"] = sum(1 for s in statuses if s not in (200, 250))
    fig.seconds = time.monotonic() - started
    return fig


# 8. Size limits ----------------------------------------------------------------------------------------
async def size_limits(rig: Rig, body_limit: int, email_limit: int, frame_limit: int = 64 * 1024) -> Figures:
    """Over-limit HTTP bodies → 413, SMTP DATA → 552, WebSocket frames → close 1009; the product
    still answers a normal message right after."""
    fig = Figures("size limits")
    started = time.monotonic()
    big = "x" * (body_limit + 1024)
    answers: dict[str, Any] = {}
    params = inbound_params("+33639990001", big, to=OUR_NUMBER)
    headers, body = signed_inbound(rig.product.url, SMS_PATH, AUTH_TOKEN, params)
    async with rig.http.post(rig.product.url + SMS_PATH, data=body, headers=headers) as resp:
        answers["sms webhook"] = resp.status
    tg_headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}
    async with rig.http.post(
        f"{rig.product.url}/telegram/webhook", data=as_body(update(1, 5, big)), headers=tg_headers
    ) as resp:
        answers["telegram webhook"] = resp.status
    async with rig.http.post(f"{rig.product.url}/api/callbacks", data=big.encode(),
                             headers={"Content-Type": "application/json"}) as resp:  # fmt: skip
        answers["callback api"] = resp.status
    answers["smtp data"] = await send_mail(rig, "big@example.fr", "y" * (email_limit + 1024), "big-1@example.fr")
    async with rig.http.post(
        f"{rig.product.url}/webchat/session", json={}, headers={"Origin": rig.product.url}
    ) as resp:
        token = (await resp.json())["token"]
    async with rig.http.ws_connect(
        f"{rig.product.url}/webchat/ws?token={token}", headers={"Origin": rig.product.url}
    ) as ws:
        await ws.send_str("z" * (frame_limit + 1))
        msg = await ws.receive(timeout=10)
        answers["webchat frame"] = ws.close_code if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                                                 aiohttp.WSMsgType.CLOSING) else msg.type  # fmt: skip
    fig.notes.update(answers)
    # Nothing else is affected: a normal SMS is accepted and answered.
    ok = await post_sms(rig, "+33639990002", "Bonjour", new_sid("SM"))
    await rig.quiet()
    fig.sent, fig.unique = 6, 1
    fig.replies = rig.replies()["tel:+33639990002"]
    fig.stored = 1 if ok == 200 else 0
    fig.lost = 1 - min(1, fig.replies)
    fig.seconds = time.monotonic() - started
    return fig


# 6. Status callbacks ------------------------------------------------------------------------------------
async def callbacks_shuffled(rig: Rig, n: int = 20, copies: int = 2) -> Figures:
    """Each reply's status callbacks sent in a random order, ``copies`` times over at once → every
    message ends at its last real status (delivered is never overwritten by sent)."""
    fig = Figures("status callbacks")
    started = time.monotonic()
    rng = random.Random(11)
    members = [f"+3363998{i:04d}" for i in range(n)]
    await asyncio.gather(*(post_sms(rig, m, "Bonjour", new_sid("SM")) for m in members))
    await rig.twilio.wait_for(n, timeout=60)
    await rig.quiet()
    expected: dict[str, str] = {}
    calls = []
    for i, sent in enumerate(rig.twilio.messages[-n:]):
        final = "undelivered" if i % 5 == 0 else "delivered"
        expected[sent.sid] = final
        for _ in range(copies):
            statuses = ["queued", "sent", final]
            rng.shuffle(statuses)
            calls.append(rig.twilio.deliver_callbacks(url=rig.product.url + "/sms/twilio/status", sid=sent.sid,
                                                      statuses=statuses,
                                                      error_code="30003" if final == "undelivered" else None))  # fmt: skip
    codes = [c for batch in await asyncio.gather(*calls) for c in batch]
    fig.sent, fig.unique = len(codes), n
    fig.answers_5xx = sum(1 for c in codes if c >= 500)
    redis = await rig.redis()
    wrong = 0
    for sid, final in expected.items():
        conv, _, msg = str(await redis.get(keys.provider_ref("sms", sid))).partition(" ")
        status = await redis.hget(keys.message(conv, msg), "status")
        wrong += status != final
    await redis.aclose()
    fig.stored = n - wrong
    fig.notes["went backwards"] = wrong
    fig.seconds = time.monotonic() - started
    return fig


# 4. Poison message ----------------------------------------------------------------------------------------
async def poison(rig: Rig, max_attempts: int = 5) -> Figures:
    """An inbound entry whose handling always fails (written by a faulty producer: its timestamp is not a
    number) goes to the dead-letter stream after ``max_attempts``; its member's next message and another
    member's are answered meanwhile."""
    fig = Figures("poison message")
    started = time.monotonic()
    member, other = "+33639997777", "+33639997778"
    bad = inbound("sms", f"tel:{member}", "Bonjour", new_sid("SM"))
    raw = bad.to_json().replace(f'"created_ms":{bad.created_ms}', '"created_ms":"hier"')
    redis = await rig.redis()
    shard = keys.shard_of(bad.urn, rig.shards)
    await redis.xadd(keys.stream("in", shard), {"m": raw})
    await asyncio.gather(post_sms(rig, member, "Où en est mon remboursement ?", new_sid("SM")),
                         post_sms(rig, other, "Bonjour", new_sid("SM")))  # fmt: skip
    fig.sent, fig.unique = 3, 2
    answered = await rig.twilio.wait_for(2, timeout=10)  # not held up by the poison's retries
    fig.notes["answered while it failed"] = len({m.to for m in answered} & {member, other})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30 * max_attempts
    while not await redis.xlen(keys.dead("in", shard)) and loop.time() < deadline:
        await asyncio.sleep(0.2)
    dead = await redis.xrange(keys.dead("in", shard))
    attempts = await redis.hget(keys.attempts("in", shard), dead[0][1]["entry"]) if dead else None
    await redis.aclose()
    await rig.quiet()
    fig.replies = sum(rig.replies()[f"tel:{m}"] for m in (member, other))
    fig.stored = fig.replies
    fig.notes["dead letters"] = len(dead)
    fig.notes["error"] = dead[0][1]["error"][:60] if dead else ""
    fig.notes["attempts left behind"] = attempts or 0
    fig.lost = 2 - fig.replies
    fig.seconds = time.monotonic() - started
    return fig
