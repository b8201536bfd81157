"""The reliability scenarios, each returning its figures. Tests run them with short counts and assert
on the figures; ``bench/chaos.py`` runs them with long counts and prints the same figures as a table.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib

from gateway import keys
from gateway.envelope import inbound
from members.records import Member
from tests.e2e.product import AUTH_TOKEN, OUR_NUMBER, TELEGRAM_SECRET
from tests.fakes.telegram import as_body, update
from tests.fakes.twilio import inbound_params, new_sid, signed_inbound
from tests.reliability.flooder import flooding
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
    dead_lettered: int = 0
    reply_ms: str = "-"  # p50/p99 from an SMS's 200 to its first reply at Twilio
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
            "dead": self.dead_lettered,
            "reply p50/p99 ms": self.reply_ms,
            "s": round(self.seconds, 1),
            "details": details or "-",
        }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else 0.0


async def finish(rig: Rig, fig: Figures) -> Figures:
    """What every scenario reports besides its own figures: dead letters and SMS reply times."""
    fig.dead_lettered = await rig.dead_lettered()
    latencies = rig.latencies()
    if latencies:
        fig.reply_ms = f"{percentile(latencies, 0.5) * 1000:.0f}/{percentile(latencies, 0.99) * 1000:.0f}"
    return fig


# Inbound deliveries as each provider makes them -------------------------------------------------
async def post_sms(rig: Rig, member: str, text: str, sid: str) -> int:
    params = inbound_params(member, text, to=OUR_NUMBER, sid=sid)
    headers, body = signed_inbound(rig.product.url, SMS_PATH, AUTH_TOKEN, params)
    async with rig.http.post(rig.product.url + SMS_PATH, data=body, headers=headers) as resp:
        await resp.read()
        if resp.status == 200:
            rig.accepted_at.setdefault(f"tel:{member}", time.monotonic())
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
    return await finish(rig, fig)


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
    return await finish(rig, fig)


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
    return await finish(rig, fig)


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
    return await finish(rig, fig)


async def failed_records(rig: Rig) -> list[dict[str, str]]:
    """Delivery records of outbound messages that failed for good."""
    redis = await rig.redis()
    try:
        out = []
        async for key in redis.scan_iter(match=keys.message("*", "*"), count=1000):
            record = await redis.hgetall(key)
            if record.get("status") == "failed":
                out.append(record)
        return out
    finally:
        await redis.aclose()


async def count_failed(rig: Rig) -> int:
    return len(await failed_records(rig))


# 5. Provider faults ------------------------------------------------------------------------------------
async def sms_faults(rig: Rig, members: int = 8, retry_after: float = 2.0) -> Figures:
    """Twilio answers 503, 500, 429 with Retry-After, closes the connection, answers too late (after
    the send timeout: the SMS was created, we do not know it) and refuses one number for good →
    every other member gets exactly one reply; the refused one is recorded failed with Twilio's code;
    the throttled message waits at least Retry-After."""
    fig = Figures("provider faults: Twilio")
    started = time.monotonic()
    plan = [("503", {"status": 503}), ("500", {"status": 500}), ("429", {"status": 429, "code": 20429,
            "retry_after": retry_after}), ("reset", {"drop": True}), ("late answer", {"delay": 4.0}),
            ("503", {"status": 503})]  # fmt: skip
    for kind, fault in plan:
        rig.twilio.inject(**fault)  # type: ignore[arg-type]
        fig.faults[kind] += 1
    numbers = [f"+3363996{i:04d}" for i in range(members)]
    refused = numbers[-1]
    rig.twilio.block(refused)  # replied STOP at Twilio: 21610 every time
    fig.faults["refused for good"] += 1
    statuses = await asyncio.gather(*(post_sms(rig, n, "Bonjour", new_sid("SM")) for n in numbers))
    fig.sent, fig.unique = members, members
    fig.answers_5xx = sum(1 for s in statuses if s >= 500)
    await rig.quiet(timeout=90)
    got = Counter(m.to for m in rig.twilio.messages)
    fig.replies = sum(got[n] for n in numbers)
    fig.lost = sum(1 for n in numbers[:-1] if got[n] == 0)
    fig.duplicated = sum(max(0, got[n] - 1) for n in numbers)
    throttled = [r for r in rig.twilio.requests if r.status == 429]
    waits = [
        min((r.at for r in rig.twilio.requests if r.params.get("To") == t.params.get("To") and r.at > t.at),
            default=float("inf")) - t.at
        for t in throttled
    ]  # fmt: skip
    fig.notes["waited after 429 (s)"] = round(min(waits), 1) if waits else "-"
    failed = await failed_records(rig)
    fig.notes["refused recorded"] = (
        f"{failed[0].get('error_code')} {failed[0].get('error', '')[:40]}" if failed else "no"
    )
    fig.stored = members
    fig.seconds = time.monotonic() - started
    return await finish(rig, fig)


async def telegram_faults(rig: Rig, chats: int = 8) -> Figures:
    """Telegram answers 429 with retry_after, 500, 502, one answer too late (the message was shown:
    Telegram has no idempotency key, so the channel is at-least-once and may show it twice), and
    one "bot was blocked" (permanent) → every other chat gets its reply."""
    fig = Figures("provider faults: Telegram")
    started = time.monotonic()
    rig.telegram.inject(status=429, retry_after=1)
    rig.telegram.inject(status=500)
    rig.telegram.inject(status=502, description="Bad Gateway")
    rig.telegram.inject(status=200, delay=4.0)
    rig.telegram.inject(status=403)
    for kind in ("429", "500", "502", "late answer", "blocked for good"):
        fig.faults[kind] += 1
    ids = [int(f"53{i:04d}") for i in range(chats)]
    statuses = await asyncio.gather(*(post_telegram(rig, 800000 + c, c, "Bonjour") for c in ids))
    fig.sent = fig.unique = chats
    fig.answers_5xx = sum(1 for s in statuses if s >= 500)
    await rig.quiet(timeout=90)
    got = Counter(int(m.chat_id) for m in rig.telegram.sent)
    fig.replies = sum(got[c] for c in ids)
    fig.duplicated = sum(max(0, got[c] - 1) for c in ids)
    fig.notes["failed for good"] = await count_failed(rig)
    fig.lost = sum(1 for c in ids if got[c] == 0) - fig.notes["failed for good"]  # refused, and recorded so
    fig.stored = chats
    fig.seconds = time.monotonic() - started
    return await finish(rig, fig)


async def email_faults(rig: Rig, senders: int = 6) -> Figures:
    """The relay answers 451 (try later) twice, takes one message but answers too late (the same
    Message-ID is sent again: receiving servers drop the copy), and refuses one with 550 (permanent)."""
    fig = Figures("provider faults: SMTP relay")
    started = time.monotonic()
    rig.smtp.inject(451, 2)
    rig.smtp.inject(250, delay=4.0)
    rig.smtp.inject(550)
    for kind, n in (("451", 2), ("late answer", 1), ("550", 1)):
        fig.faults[kind] += n
    addresses = [f"f{i}@example.fr" for i in range(senders)]
    codes = await asyncio.gather(
        *(send_mail(rig, a, "Bonjour", f"fault-{i}@example.fr") for i, a in enumerate(addresses))
    )
    fig.sent = fig.unique = senders
    fig.notes["our smtp answers"] = ",".join(sorted({str(c) for c in codes}))
    await rig.quiet(timeout=90)
    got = Counter(r.rcpt_tos[0] for r in rig.smtp.received)
    ids = Counter((r.rcpt_tos[0], str(r.message["Message-ID"])) for r in rig.smtp.received)
    fig.replies = sum(got[a] for a in addresses)
    fig.duplicated = sum(max(0, n - 1) for n in ids.values())
    fig.notes["copies with another Message-ID"] = sum(max(0, got[a] - 1) for a in addresses) - fig.duplicated
    fig.notes["failed for good"] = await count_failed(rig)
    fig.lost = sum(1 for a in addresses if got[a] == 0) - fig.notes["failed for good"]
    fig.stored = senders
    fig.seconds = time.monotonic() - started
    return await finish(rig, fig)


# 3. Redis crash -----------------------------------------------------------------------------------------
async def redis_crash(rig: Rig, messages: int = 120, per_s: float = 30.0, kill_at: float = 0.4) -> Figures:
    """Inbound SMS flow at ``per_s``; redis-server is killed with SIGKILL part-way → run.py serve starts
    it again on its data, the processes reconnect by themselves; every message that got a 200 is
    answered once; one refused during the outage is delivered again by the provider, as Twilio does."""
    fig = Figures("redis crash")
    started = time.monotonic()
    pidfile = rig.product.env_var_dir / "redis" / "redis.pid"
    members = [f"+3363995{i:04d}" for i in range(messages)]
    refused = 0
    killed_at = recovered_at = 0.0

    async def deliver(member: str) -> None:
        nonlocal refused, recovered_at
        sid = new_sid("SM")
        for _ in range(60):  # Twilio retries a failed webhook; so does this loop (bounded)
            try:
                status = await asyncio.wait_for(post_sms(rig, member, "Bonjour", sid), timeout=20)
            except (TimeoutError, aiohttp.ClientError):
                status = 0
            if status == 200:
                if killed_at and not recovered_at:
                    recovered_at = time.monotonic()
                return
            refused += 1
            fig.answers_5xx += status >= 500
            await asyncio.sleep(1.0)

    tasks = []
    for i, member in enumerate(members):
        if i == int(messages * kill_at):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
            killed_at = time.monotonic()
            fig.faults["redis SIGKILL"] += 1
        tasks.append(asyncio.create_task(deliver(member)))
        await asyncio.sleep(1 / per_s)
    await asyncio.gather(*tasks)
    await rig.quiet(timeout=120)
    got = Counter(m.to for m in rig.twilio.messages)
    fig.sent = fig.unique = messages
    fig.stored = len({m.urn for m in await rig.inbound()} & {f"tel:{m}" for m in members})
    fig.replies = sum(got[m] for m in members)
    fig.lost = sum(1 for m in members if got[m] == 0)
    fig.duplicated = sum(max(0, got[m] - 1) for m in members)
    fig.notes["refused during the outage"] = refused
    fig.notes["back after (s)"] = round(recovered_at - killed_at, 1) if recovered_at else "-"
    fig.seconds = time.monotonic() - started
    return await finish(rig, fig)


# 2. Kill -9 anywhere ------------------------------------------------------------------------------------
def product_pids(rig: Rig) -> dict[str, int]:
    """The product's processes: the supervisor, its web and worker children, the private Redis."""
    assert rig.product.proc is not None
    serve = rig.product.proc.pid
    out = {"serve": serve}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == serve and len(cmd) > 2 and cmd[1].endswith(b"run.py") and cmd[2] in (b"web", b"worker"):
            out[cmd[2].decode()] = int(entry.name)
    with contextlib.suppress(OSError, ValueError):
        out["redis"] = int((rig.product.env_var_dir / "redis" / "redis.pid").read_text())
    return out


async def kill_anywhere(
    rig: Rig,
    *,
    kills: int = 6,
    inbound: int = 300,
    recipients: int = 2000,
    seed: int = 2026,
    targets: tuple[str, ...] = ("serve", "web", "worker", "redis"),
) -> Figures:
    """SIGKILL of a random process of the product (supervisor, web, worker, Redis) at random instants,
    ``kills`` times, while ``inbound`` SMS flow in and a campaign notifies ``recipients`` members →
    after restarts, every inbound message is answered once and every recipient notified once."""
    from campaigns.rules import is_public_holiday
    from tests.e2e.test_campaign_e2e import TODAY, campaign_cli, load

    fig = Figures("kill -9 anywhere")
    started = time.monotonic()
    rng = random.Random(seed)
    if TODAY.isoweekday() == 7 or is_public_holiday(TODAY.date()):
        recipients = 0  # notices never go on a Sunday or a public holiday: only the inbound flow today
        fig.notes["campaign"] = "not today (Sunday or public holiday)"
    redis = await rig.redis()
    people = [Member(f"K{i:07d}", "Louis", f"Martin{i}", "1960-07-01", f"+3335402{i:04d}" if i % 2 else "",
                     "" if i % 2 else f"k{i}@example.fr", "integral", "Occitanie", "senior", "98.10", "2027-03-10")
              for i in range(recipients)]  # fmt: skip
    await load(redis, people)
    await redis.aclose()
    spec = {"kind": "benefit_change", "title": "Évolution de vos garanties",
            "effective_date": (TODAY.date() + dt.timedelta(days=70)).replace(day=1).isoformat(),
            "channels": ["sms", "email"], "values": {"change_summary": "le forfait optique passe à 150 €."},
            "audience": {"members": [m.number for m in people]},
            "window": {"start": "00:00", "end": "23:59", "weekdays": [1, 2, 3, 4, 5, 6]}}  # fmt: skip
    if recipients:
        path = rig.product.env_var_dir.parent / "campagne.json"
        path.write_text(json.dumps(spec), encoding="utf-8")
        cid = campaign_cli(rig.product, "create", str(path)).strip()
        campaign_cli(rig.product, "schedule", cid)
    senders = [f"+3363994{i:04d}" for i in range(inbound)]
    kill_points: list[str] = []

    async def deliver(member: str, at: float) -> None:
        await asyncio.sleep(at)
        sid = new_sid("SM")
        for _ in range(120):  # as Twilio retries a webhook that failed (bounded)
            try:
                if await asyncio.wait_for(post_sms(rig, member, "Bonjour", sid), timeout=20) == 200:
                    return
            except (TimeoutError, aiohttp.ClientError):
                pass
            await asyncio.sleep(0.5)

    def notified() -> int:
        return sum(1 for m in rig.twilio.messages if m.to.startswith("+3335402")) + len(rig.smtp.received)

    async def killer() -> None:
        for _ in range(kills):
            await asyncio.sleep(rng.uniform(0.5, 2.5))
            pids = {k: v for k, v in product_pids(rig).items() if k in targets}
            target = rng.choice(sorted(pids))
            answered = sum(1 for m in rig.twilio.messages if m.to.startswith("+3363994"))
            kill_points.append(f"{target} at {time.monotonic() - started:.1f}s ({answered} answered, "
                               f"{notified()} notified)")  # fmt: skip
            with contextlib.suppress(ProcessLookupError):
                os.kill(pids[target], signal.SIGKILL)
            fig.faults[f"SIGKILL {target}"] += 1
            if target == "serve":  # the whole product is down (its children die with it): start it again
                assert rig.product.proc is not None
                rig.product.proc.wait(timeout=10)
                await asyncio.sleep(0.5)
                await rig.product.start(timeout=60)

    spread = inbound / 40  # about 40 messages a second
    await asyncio.gather(killer(), *(deliver(m, rng.uniform(0, spread)) for m in senders))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 180
    while notified() < recipients and loop.time() < deadline:
        await asyncio.sleep(0.2)
    await rig.quiet(timeout=120)
    await asyncio.sleep(2.0)  # nothing more may arrive
    sms = Counter(m.to for m in rig.twilio.messages)
    mail_ids: dict[str, set[str]] = {}
    for r in rig.smtp.received:
        mail_ids.setdefault(r.rcpt_tos[0], set()).add(str(r.message["Message-ID"]))
    fig.sent = inbound + recipients
    fig.unique = inbound + recipients
    fig.replies = sum(min(1, sms[m]) for m in senders)
    answered_once = sum(1 for m in senders if sms[m] == 1)
    notified_once = sum(1 for m in people if (sms[m.phone] == 1 if m.phone else len(mail_ids.get(m.email, ())) == 1))
    fig.stored = answered_once + notified_once
    fig.lost = sum(1 for m in senders if sms[m] == 0) + sum(
        1 for m in people if (sms[m.phone] == 0 if m.phone else not mail_ids.get(m.email))
    )
    fig.duplicated = sum(max(0, sms[m] - 1) for m in senders) + sum(max(0, sms[m.phone] - 1) for m in people if m.phone)
    fig.duplicated += sum(max(0, len(ids) - 1) for ids in mail_ids.values())
    fig.notes["e-mails re-sent with their Message-ID"] = len(rig.smtp.received) - len(mail_ids)
    twice = [n for n in [*senders, *(m.phone for m in people if m.phone)] if sms[n] > 1]
    if twice or any(len(ids) > 1 for ids in mail_ids.values()):
        fig.notes["duplicates"] = await _explain(rig, twice[:5], {a: i for a, i in mail_ids.items() if len(i) > 1})
    fig.notes["kill points"] = " | ".join(kill_points)
    fig.seconds = time.monotonic() - started
    return await finish(rig, fig)


async def _explain(rig: Rig, numbers: list[str], mails: dict[str, set[str]]) -> str:
    """What the product recorded about messages that reached a provider twice (for the kill points)."""
    redis = await rig.redis()
    out = []
    try:
        for number in numbers:
            for m in (m for m in rig.twilio.messages if m.to == number):
                ref = await redis.get(keys.provider_ref("sms", m.sid)) or ""
                conv, _, msg = ref.partition(" ")
                record = await redis.hgetall(keys.message(conv, msg)) if ref else {}
                fields = ("status", "attempts", "inflight_ms", "last_error", "next_attempt_ms")
                out.append(f"{number[-4:]} {m.sid[-6:]} at {m.at:.1f} ref={msg or '-'} " + " ".join(
                    f"{k}={record[k]}" for k in fields if k in record))  # fmt: skip
        out += [f"{a}: {sorted(ids)}" for a, ids in mails.items()]
    finally:
        await redis.aclose()
    return " / ".join(out)


# 7. Flood isolation --------------------------------------------------------------------------------------
def p99(values: list[float]) -> float:
    return percentile(values, 0.99)


def p99_ratio_interval(slower: list[float], base: list[float], rounds: int = 2000) -> tuple[float, float]:
    """A 90 % bootstrap interval of ``p99(slower) / p99(base)``. The p99 of some hundred samples of a
    few milliseconds moves by a millisecond from run to run on a shared machine; the interval says how
    far the measured ratio can be trusted (seeded, so a run's figures can be reproduced)."""
    if not slower or not base:
        return (0.0, 0.0)
    rng = random.Random(99)
    ratios = sorted(
        p99(rng.choices(slower, k=len(slower))) / p99(rng.choices(base, k=len(base))) for _ in range(rounds)
    )
    return (percentile(ratios, 0.05), percentile(ratios, 0.95))


async def _reply_latencies(
    rig: Rig, members: list[str], per_member: int, gap_s: float, flood_on: Callable[[], bool] = lambda: False
) -> tuple[list[float], list[float]]:
    """Each member sends ``per_member`` SMS ``gap_s`` apart; the time from posting the webhook to the reply
    reaching the provider, for each, split by whether a flood was on when it was sent (quiet, flooded)."""
    sent_at: dict[tuple[str, int], tuple[float, bool]] = {}
    seen = Counter(m.to for m in rig.twilio.messages)
    base = {n: seen[n] for n in members}
    quiet: list[float] = []
    flooded: list[float] = []
    done = asyncio.Event()

    async def watch() -> None:
        index = len(rig.twilio.messages)
        while not done.is_set():
            messages = rig.twilio.messages
            for m in messages[index:]:
                if m.to in base:
                    seen[m.to] += 1
                    key = (m.to, seen[m.to] - base[m.to])
                    if key in sent_at:
                        at, during = sent_at[key]
                        (flooded if during else quiet).append(m.at - at)  # when Twilio got it
            index = len(messages)
            await asyncio.sleep(0.005)

    async def member(number: str, offset: float) -> None:
        await asyncio.sleep(offset)
        for i in range(1, per_member + 1):
            # Timed from the post, not from our 200: the reply may reach Twilio before the 200 reaches us
            # (a gateway descheduled in between), and would then be timed from after it arrived.
            sent_at[(number, i)] = (time.monotonic(), flood_on())
            await post_sms(rig, number, f"Question {i}", new_sid("SM"))
            await asyncio.sleep(gap_s)

    watcher = asyncio.create_task(watch())
    await asyncio.gather(*(member(n, k * gap_s / len(members)) for k, n in enumerate(members)))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while len(quiet) + len(flooded) < len(members) * per_member and loop.time() < deadline:
        await asyncio.sleep(0.05)
    done.set()
    await watcher
    return quiet, flooded


async def flood_isolation(
    rig: Rig, members: int = 40, per_member: int = 10, flood_per_s: float = 50.0, window_s: float = 2.0
) -> Figures:
    """Members write steadily while one sender writes ``flood_per_s`` messages a second, every other
    ``window_s`` (so both conditions share the same minutes): the others' reply p99 with the flood on
    versus off. The flooder is stored, answered at a person's pace, and told once to slow down."""
    fig = Figures("flood isolation")
    started = time.monotonic()
    await _reply_latencies(rig, [f"+3363991{i:04d}" for i in range(members)], 3, 0.5)  # warm-up, not counted
    flooder = "+33639900000"
    t0 = time.monotonic()

    def on() -> bool:
        return flooding(t0, window_s)

    # The flood is posted by a process of its own: posting from this event loop, which also times the
    # replies at the fake Twilio, would delay the timing itself whenever the flood is on.
    ready = [
        signed_inbound(rig.product.url, SMS_PATH, AUTH_TOKEN, inbound_params(flooder, "spam", to=OUR_NUMBER))
        for _ in range(int(flood_per_s * per_member * 2.0) + 100)
    ]
    spec = {
        "url": rig.product.url + SMS_PATH,
        "per_s": flood_per_s,
        "window_s": window_s,
        "t0": t0,
        "requests": [[headers, body.decode()] for headers, body in ready],
    }
    flood = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.reliability.flooder",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert flood.stdin and flood.stdout
    flood.stdin.write(json.dumps(spec).encode())
    flood.stdin.close()
    assert (await flood.stdout.readline()).strip() == b"ready"
    # Each member writes every 2 s, as a person might at most: only the flooder is over the limit.
    quiet, flooded = await _reply_latencies(rig, [f"+3363993{i:04d}" for i in range(members)], per_member, 2.0, on)
    with contextlib.suppress(ProcessLookupError):  # it stops by itself when it has sent everything
        flood.terminate()
    printed = await asyncio.wait_for(flood.stdout.readline(), timeout=60)
    assert printed, f"the flooder stopped without its figures (exit {await flood.wait()})"
    flood_out = json.loads(printed)
    await flood.wait()
    flood_sent = flood_out["sent"]
    fig.answers_5xx = flood_out["5xx"]
    await rig.quiet(timeout=120)
    to_flooder = [m.body for m in rig.twilio.messages if m.to == flooder]
    fig.sent = members * per_member + flood_sent
    fig.unique = fig.sent
    fig.stored = sum(1 for m in await rig.inbound() if m.urn == f"tel:{flooder}")
    fig.replies = len(quiet) + len(flooded)
    fig.lost = members * per_member - fig.replies
    fig.faults["flood messages"] = flood_sent
    fig.notes["p99 flood off (ms)"] = round(p99(quiet) * 1000, 1)
    fig.notes["p99 flood on (ms)"] = round(p99(flooded) * 1000, 1)
    fig.notes["ratio"] = round(p99(flooded) / p99(quiet), 2) if quiet and flooded else "-"
    low, high = p99_ratio_interval(flooded, quiet)
    fig.notes["ratio 90 % interval"] = f"{low:.2f}–{high:.2f}"
    fig.notes["ratio at least"] = round(low, 2)
    fig.notes["samples"] = f"{len(quiet)}/{len(flooded)}"
    fig.notes["answers to the flooder"] = len(to_flooder)
    fig.notes["told to slow down"] = sum(1 for b in to_flooder if "beaucoup en peu de temps" in b)
    fig.seconds = time.monotonic() - started
    return await finish(rig, fig)


# Soak ---------------------------------------------------------------------------------------------------------
def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def soak(rig: Rig, seconds: float = 60.0, per_s: float = 10.0, warmup_s: float = 10.0) -> Figures:
    """Mixed traffic at a steady rate (SMS, Telegram, e-mail in turn, every sender writing once a
    minute at most) for ``seconds``; memory of each process after the warm-up and at the end."""
    fig = Figures("soak")
    started = time.monotonic()
    sent: Counter[str] = Counter()
    tasks: list[asyncio.Task[int]] = []
    memory_start: dict[str, float] = {}
    n = 0
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        kind = ("sms", "telegram", "email")[n % 3]
        who = n // 3 % max(1, int(per_s * 60 / 3))  # each address writes once a minute at most
        if kind == "sms":
            address = f"+3363980{who:04d}"
            tasks.append(asyncio.create_task(post_sms(rig, address, "Bonjour", new_sid("SM"))))
            sent[f"tel:{address}"] += 1
        elif kind == "telegram":
            chat = 540000 + who
            tasks.append(asyncio.create_task(post_telegram(rig, 10_000_000 + n, chat, "Bonjour")))
            sent[f"telegram:{chat}"] += 1
        else:
            address = f"s{who}@example.fr"
            tasks.append(asyncio.create_task(send_mail(rig, address, "Bonjour", f"soak-{n}@example.fr")))
            sent[f"mailto:{address}"] += 1
        n += 1
        if not memory_start and loop.time() - (end - seconds) >= warmup_s:
            memory_start = {name: rss_mb(pid) for name, pid in product_pids(rig).items()}
        await asyncio.sleep(1 / per_s)
    statuses = await asyncio.gather(*tasks)
    await rig.quiet(timeout=180)
    memory_end = {name: rss_mb(pid) for name, pid in product_pids(rig).items()}
    replies = rig.replies()
    fig.sent = fig.unique = n
    fig.answers_5xx = sum(1 for s in statuses if s >= 500)
    fig.stored = len(await rig.inbound())
    fig.replies = sum(replies[a] for a in sent)
    fig.lost = sum(max(0, sent[a] - replies[a]) for a in sent)
    fig.duplicated = sum(max(0, replies[a] - sent[a]) for a in sent)
    fig.notes["memory MB (start → end)"] = ", ".join(
        f"{k} {memory_start.get(k, 0):.0f}→{v:.0f}" for k, v in sorted(memory_end.items())
    )
    growth = max((v - memory_start.get(k, v) for k, v in memory_end.items()), default=0.0)
    fig.notes["largest growth MB"] = round(growth, 1)
    fig.seconds = time.monotonic() - started
    return await finish(rig, fig)
