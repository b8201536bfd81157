"""Members told before they ask: when the back office sets a claim to paid through the records API, the
member gets one short message on their channel, before they write to ask where it stands.

* **Which channel.** The member's ``preferred_channel`` when it reaches them (enabled, an address, not
  opted out there with STOP), else SMS, then e-mail.
* **Not when declined.** ``notify_optout`` on the member (``all`` or the kinds, e.g. ``claims``): nothing.
* **Not at night.** Each channel's hours (``PROACTIVE_SMS_HOURS`` for SMS and WhatsApp, by default
  Monday to Saturday 08:00–20:00 Paris time, never on a public holiday; ``PROACTIVE_EMAIL_HOURS``, any
  time by default): outside them the message waits (``mbr:proactive:waiting``) and a scheduler job sends
  it when the hours open.
* **Never two about the same change.** One message per record and change (a marker in the member's slot,
  and the message id de-duplicated by the outbound stream).
* **Grouped.** Changes of one member pending together go in one message: those of one records API request
  (a bulk of the day's changes), those waiting for the channel's hours (sent together when they open), and,
  with ``PROACTIVE_GROUP_WINDOW_S`` set, those stored within that many seconds of the first (each message
  is held that long). A change told already is left out of a group; a group's id is derived from its
  changes, so a replay sends it once.
* **A due date about to pass.** ``PROACTIVE_DUE_DAYS`` (3) days before the member's contribution call
  (``contribution_call_date``, indexed in ``keys.CONTRIBUTION_CALLS``), one reminder per call date, in the
  channel's hours, declined with the kind ``contributions``.
* **DETAIL.** The records the last message was about are kept (``keys.member_last_notice``, 30 days): the
  member's answer « DETAIL » is routed by the gateway to the bot, which verifies identity and gives them.
  When the member was told of each record is kept too (``keys.member_notices``), beside when the back
  office last changed it (``keys.member_changes``): the bot counts the status questions a message did or
  did not avoid (``bot/actions/detail.py``).
* **No health detail.** The text says an amount was paid and when (« Un remboursement de 57,42 € a été
  versé le 5 décembre. Détail : répondez DETAIL. »); the rest is for a verified conversation.
  Templates: ``templates/proactive/`` (French).

The changes told (``news_of``): a claim paid or refused, a complaint answered, a card sent, a membership
acknowledged, a contribution call in a few days (``due_news``); each once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from redis.exceptions import RedisError

from gateway import keys
from gateway.envelope import Message
from gateway.hours import OpeningHours
from gateway.metrics import PROACTIVE_CHANGES, PROACTIVE_MESSAGES
from members.changes import Change, Record
from members.records import MEMBER_FIELDS, Card, Claim, Complaint, Member, Membership, MemberStore

log = logging.getLogger(__name__)

PARIS = ZoneInfo("Europe/Paris")
WAITING = "mbr:proactive:waiting"  # sorted set: message id, score = when it was due (ms)
WAITING_BODY = "mbr:proactive:waiting:msg"  # hash: message id -> the message (JSON)
TOLD_TTL_S = 400 * 24 * 3600
MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
          "novembre", "décembre")  # fmt: skip
ORDER = ("sms", "email")
DETAIL_HINT = "Détail : répondez DETAIL."
GROUP_SUBJECT = "Des nouvelles de votre dossier"
LAST_NOTICE_TTL_S = 30 * 24 * 3600
DUE_EVERY_S = 900.0  # how often the contribution calls about to come are looked at

Enqueue = Callable[[list[Message]], Awaitable[int]]


def told_key(number: str, kind: str, rid: str, status: str) -> str:
    """Set once the member was told of this change (the member's slot: erased with them)."""
    return f"{keys.member(number)}:told:{kind}:{rid}:{status}"


def french_amount(value: str) -> str:
    return f"{Decimal(value or '0'):.2f}".replace(".", ",")


def french_date(iso: str) -> str:
    day = dt.date.fromisoformat(iso)
    return f"{'1er' if day.day == 1 else day.day} {MONTHS[day.month - 1]}"


def address(member: Member, channel: str) -> str:
    if channel == "sms" and member.phone:
        return f"tel:{member.phone}"
    if channel == "whatsapp" and member.phone:
        return f"whatsapp:{member.phone}"
    if channel == "email" and member.email:
        return f"mailto:{member.email}"
    return ""


@dataclass(frozen=True, slots=True)
class News:
    """A change worth telling the member: what, which record, which change, the template and its values."""

    member: str
    kind: str
    rid: str
    change: str
    template: str
    values: dict[str, str]

    @property
    def key(self) -> str:
        """The change, as kept in a message's ``changes``: "<kind>.<record id>.<change>"."""
        return f"{self.kind}.{self.rid}.{self.change}"


def news_of(record: Record) -> News | None:
    """The change a stored record announces, if any (its state now, so a repeat tells nothing new)."""
    if isinstance(record, Claim) and record.status == "paid" and record.payment_date:
        values = {"amount": french_amount(record.reimbursed_eur), "date": french_date(record.payment_date)}
        return News(record.member, "claims", record.id, "paid", "claim_paid", values)
    if isinstance(record, Claim) and record.status == "rejected":
        return News(record.member, "claims", record.id, "rejected", "claim_rejected", {})
    if isinstance(record, Complaint) and record.status in ("answered", "closed") and record.answered_date:
        return News(record.member, "complaints", record.id, "answered", "complaint_answered", {"reference": record.id})
    if isinstance(record, Card) and record.status == "sent" and record.dispatch_date:
        return News(record.member, "cards", record.id, "sent", "card_sent", {"date": french_date(record.dispatch_date)})
    if isinstance(record, Membership) and record.acknowledged_date:
        return News(record.member, "memberships", record.id, "acknowledged", "membership_acknowledged",
                    {"date": french_date(record.acknowledged_date)})  # fmt: skip
    return None


def due_news(member: Member, today: dt.date, days: int) -> News | None:
    """The reminder of a contribution call within ``days`` days (0: none), once per call date."""
    if days <= 0 or not member.contribution_call_date:
        return None
    call = dt.date.fromisoformat(member.contribution_call_date)
    if not today <= call <= today + dt.timedelta(days=days):
        return None
    values = {"amount": french_amount(member.contribution_eur), "date": french_date(call.isoformat())}
    return News(member.number, "contributions", call.isoformat(), "due", "contribution_due", values)


def render_news(
    templates: jinja2.Environment, template: str, channel: str, values: dict[str, str], mutuelle: str
) -> tuple[str, str]:
    """A change's text and e-mail subject for ``channel``: ``templates/proactive/<kind>.<channel>.text.j2``
    when the mutuelle wrote one for that channel (a longer e-mail, a WhatsApp wording), else the shared
    ``<kind>.text.j2``. The values never hold health detail beyond what the template shows."""
    base = f"proactive/{template}"
    given = {**values, "mutuelle": mutuelle}
    text = templates.select_template([f"{base}.{channel}.text.j2", f"{base}.text.j2"]).render(given).strip()
    if channel != "email":
        return text, ""  # only an e-mail has a subject
    return text, templates.get_template(f"{base}.email.subject.j2").render(given).strip()


# What each kind of change says, with example values: `run.py proactive preview` shows them per channel.
EXAMPLES: dict[str, dict[str, str]] = {
    "claim_paid": {"amount": "57,42", "date": "5 décembre"},
    "claim_rejected": {},
    "complaint_answered": {"reference": "REC-2026-000123"},
    "card_sent": {"date": "1er décembre"},
    "membership_acknowledged": {"date": "2 décembre"},
    "contribution_due": {"amount": "61,20", "date": "5 janvier"},
}


def preview(templates: jinja2.Environment, channels: tuple[str, ...], mutuelle: str) -> list[dict[str, str]]:
    """Every kind of message sent first, as each channel would carry it, with example values."""
    out = []
    for template, values in EXAMPLES.items():
        for channel in channels:
            text, subject = render_news(templates, template, channel, values, mutuelle)
            out.append(
                {
                    "kind": template,
                    "channel": channel,
                    "text": text,
                    **({"subject": subject} if channel == "email" else {}),
                }
            )
    return out


def combine(texts: list[str]) -> str:
    """One message for several: « Ma Mutuelle : un remboursement … a été versé le 5 décembre. Votre carte …
    a été envoyée le 1er décembre. Détail : répondez DETAIL. » (DETAIL once, at the end, if any said it)."""
    name, bodies, detail = "", [], False
    for i, text in enumerate(texts):
        head, _, body = text.partition(" : ")
        name = name or head
        if body.endswith(DETAIL_HINT):
            body, detail = body[: -len(DETAIL_HINT)].rstrip(), True
        bodies.append(body if i == 0 else body[:1].upper() + body[1:])
    return f"{name} : " + " ".join(bodies) + (f" {DETAIL_HINT}" if detail else "")


def changes_of(msg: Message) -> list[str]:
    """The changes a message tells ("<kind>.<record id>.<change>"); older messages say it in their id."""
    changes = msg.meta.get("changes")
    if isinstance(changes, list):
        return [str(c) for c in changes]
    _, _, kind, rid, change = msg.id.split(".", 4)
    return [f"{kind}.{rid}.{change}"]


async def waiting_of(redis: Any, number: str) -> dict[str, Message]:
    """The member's messages still waiting for their channel's hours (message id -> message): part of
    the member's export, and removed by erasure (a message queued for an erased member never goes)."""
    found: dict[str, Message] = {}
    async for msg_id, raw in redis.hscan_iter(WAITING_BODY, count=500):
        msg = Message.from_json(raw)
        if str(msg.meta.get("member") or "") == number or msg.id.split(".")[1:2] == [number]:
            found[str(msg_id)] = msg
    return found


async def drop_waiting(redis: Any, number: str) -> int:
    """Remove the member's waiting messages; returns how many there were."""
    ids = list(await waiting_of(redis, number))
    if ids:
        await redis.hdel(WAITING_BODY, *ids)
        await redis.zrem(WAITING, *ids)
    return len(ids)


def _told(member: str, change: str) -> str:
    kind, rest = change.split(".", 1)
    rid, status = rest.rsplit(".", 1)
    return told_key(member, kind, rid, status)


class Proactive:
    def __init__(self, redis: Any, *, enqueue: Enqueue, channels: tuple[str, ...], templates: jinja2.Environment,
                 sms_hours: OpeningHours | None, email_hours: OpeningHours | None, due_days: int = 0,
                 group_window_s: float = 0.0, mutuelle: str = "Ma Mutuelle") -> None:  # fmt: skip
        self.redis = redis
        self.mutuelle = mutuelle  # the name each message starts with (MUTUELLE_NAME)
        self.enqueue = enqueue
        self.channels = channels
        self.templates = templates
        self.hours = {"sms": sms_hours, "whatsapp": sms_hours, "email": email_hours}
        self.due_days = due_days
        self.group_window_ms = int(group_window_s * 1000)
        self.store = MemberStore(redis)

    def open_now(self, channel: str, now: dt.datetime | None = None) -> bool:
        hours = self.hours.get(channel)
        return hours is None or hours.is_open(now or dt.datetime.now(dt.UTC))

    async def changed(self, changes: list[Change]) -> None:
        """Records the back office stored: tell the members of each change worth telling (a bulk request's
        thousands in a few round trips), grouped per member; and note when each record changed."""
        at_ms = int(time.time() * 1000)
        records = [c for c in changes if c.record is not None and c.kind != "members"]
        if records:
            async with self.redis.pipeline(transaction=False) as pipe:
                for c in records:
                    pipe.hset(keys.member_changes(c.member), f"{c.kind}:{c.id}", at_ms)
                    pipe.expire(keys.member_changes(c.member), TOLD_TTL_S)
                await pipe.execute()
        await self.tell([n for c in changes if c.record is not None and (n := news_of(c.record)) is not None])

    async def claim_paid(self, claim: Claim, now: dt.datetime | None = None) -> str:
        """What became of the news: sent, waiting (outside the channel's hours), declined, no_channel, already."""
        news = news_of(claim)
        return (await self.tell([news], now))[0] if news else "nothing"

    async def tell(self, items: list[News], now: dt.datetime | None = None) -> list[str]:
        """Tell each member their news, one message per member (grouped); returns what became of each."""
        if not items:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for news in items:
                pipe.exists(told_key(news.member, news.kind, news.rid, news.change))
            told = await pipe.execute()
        numbers = sorted({n.member for n in items})
        members = {n: Member(**row) for n, row in zip(numbers, await self.store.read_many(numbers), strict=True)
                   if row.get("number")}  # fmt: skip
        opted = await self._opted_out(list(members.values()))
        results: list[str] = []
        groups: dict[str, list[News]] = {}
        seen: set[tuple[str, str]] = set()
        picked: dict[str, tuple[str, str] | None] = {}
        for news, was_told in zip(items, told, strict=True):
            member = members.get(news.member)
            if member is not None and news.member not in picked:
                picked[news.member] = self._channel(member, opted)
            if was_told or (news.member, news.key) in seen:
                results.append("already")
            elif member is None:
                results.append("no_channel")
            elif set(member.notify_optout.split(",")) & {"all", news.kind}:
                results.append("declined")
            elif not (where := picked[news.member]):
                results.append("no_channel")
            else:
                seen.add((news.member, news.key))
                groups.setdefault(news.member, []).append(news)
                open_now = self.open_now(where[0], now)
                results.append("sent" if open_now and not self.group_window_ms else "waiting")
        now_msgs: list[Message] = []
        waiting: list[tuple[Message, int]] = []
        now_ms = int((now or dt.datetime.now(dt.UTC)).timestamp() * 1000)
        for number, told_now in groups.items():
            where = picked[number]
            assert where is not None
            channel, urn = where
            msg = self._compose(members[number], channel, urn, [self._part(n, channel) for n in told_now])
            if not self.open_now(channel, now):
                waiting.append((msg, now_ms))
            elif self.group_window_ms:
                waiting.append((msg, now_ms + self.group_window_ms))
            else:
                now_msgs.append(msg)
        if waiting:
            async with self.redis.pipeline(transaction=False) as pipe:
                for msg, due_ms in waiting:
                    pipe.hset(WAITING_BODY, msg.id, msg.to_json())
                    pipe.zadd(WAITING, {msg.id: due_ms}, nx=True)
                await pipe.execute()
        if now_msgs:
            await self._send(now_msgs)
        return results

    def _part(self, news: News, channel: str) -> dict[str, str]:
        """One change's text (and e-mail subject), from its template."""
        text, subject = render_news(self.templates, news.template, channel, news.values, self.mutuelle)
        part = {"change": news.key, "text": text}
        if channel == "email":
            part["subject"] = subject
        return part

    def _compose(self, member: Member, channel: str, urn: str, parts: list[dict[str, str]]) -> Message:
        """One message telling ``parts``: a single change keeps its own id and text; several are grouped
        under an id derived from their changes (the same group, the same id)."""
        changes = [p["change"] for p in parts]
        if len(parts) == 1:
            msg_id, text, subject = f"n.{member.number}.{changes[0]}", parts[0]["text"], parts[0].get("subject", "")
        else:
            digest = hashlib.sha1("\n".join(sorted(changes)).encode(), usedforsecurity=False).hexdigest()[:16]
            msg_id, text, subject = f"n.{member.number}.g.{digest}", combine([p["text"] for p in parts]), GROUP_SUBJECT
        meta: dict[str, Any] = {"proactive": "grouped" if len(parts) > 1 else changes[0].split(".", 1)[0],
                                "member": member.number, "changes": changes, "parts": parts}  # fmt: skip
        if channel == "email":
            meta.update(thread={"subject": subject}, auto_generated=True)
        return Message(id=msg_id, channel=channel, urn=urn, direction="out", text=text, meta=meta,
                       conversation_id=f"n.{member.number}")  # fmt: skip

    async def _send(self, msgs: list[Message]) -> None:
        await self.enqueue(msgs)  # de-duplicated on the message id by the outbound stream
        at_ms = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            for msg in msgs:
                number = str(msg.meta.get("member") or msg.id.split(".")[1])
                changes = changes_of(msg)
                for change in changes:
                    pipe.set(_told(number, change), msg.id, ex=TOLD_TTL_S)
                records = [":".join(c.split(".")[:2]) for c in changes]
                pipe.hset(keys.member_notices(number), mapping=dict.fromkeys(records, at_ms))
                pipe.expire(keys.member_notices(number), TOLD_TTL_S)
                last = {"id": msg.id, "at_ms": at_ms, "records": records}
                pipe.set(keys.member_last_notice(number), json.dumps(last), ex=LAST_NOTICE_TTL_S)
            await pipe.execute()
        for msg in msgs:
            changes = changes_of(msg)
            PROACTIVE_MESSAGES.labels(msg.channel, "yes" if len(changes) > 1 else "no").inc()
            for change in changes:
                PROACTIVE_CHANGES.labels(change.split(".", 1)[0]).inc()
        log.info("members told before asking", extra={"messages": len(msgs)})

    async def _opted_out(self, members: list[Member]) -> set[str]:
        """The members' addresses that said STOP on their channel."""
        out: set[str] = set()
        for channel in self.channels:
            urns = sorted({u for m in members if (u := address(m, channel))})
            if urns:
                found = await self.redis.smismember(keys.opt_out(channel), urns)
                out |= {u for u, hit in zip(urns, found, strict=True) if hit}
        return out

    def _channel(self, member: Member, opted: set[str]) -> tuple[str, str] | None:
        order = [member.preferred_channel] if member.preferred_channel else []
        for channel in [*order, *ORDER]:
            urn = address(member, channel)
            if channel in self.channels and urn and urn not in opted:
                return channel, urn
        return None

    async def send_waiting(self, now: dt.datetime | None = None) -> int:
        """Send the messages due whose channel's hours are now open, one per member and address (those
        pending together are grouped, changes told meanwhile left out); returns how many went."""
        now_ms = int((now or dt.datetime.now(dt.UTC)).timestamp() * 1000)
        ids = [str(i) for i in await self.redis.zrangebyscore(WAITING, "-inf", now_ms, start=0, num=500)]
        if not ids:
            return 0
        bodies = await self.redis.hmget(WAITING_BODY, ids)
        groups: dict[tuple[str, str, str], list[Message]] = {}
        done: list[str] = []
        for msg_id, raw in zip(ids, bodies, strict=True):
            if raw is None:
                done.append(msg_id)
                continue
            msg = Message.from_json(raw)
            if self.open_now(msg.channel, now):
                number = str(msg.meta.get("member") or msg.id.split(".")[1])
                groups.setdefault((number, msg.channel, msg.urn), []).append(msg)
        out: list[Message] = []
        for (number, channel, urn), msgs in groups.items():
            parts: list[dict[str, str]] = []
            for msg in msgs:
                done.append(msg.id)
                given = msg.meta.get("parts")
                parts += given if isinstance(given, list) else [{"change": changes_of(msg)[0], "text": msg.text}]
            unique = list({p["change"]: p for p in parts}.values())
            async with self.redis.pipeline(transaction=False) as pipe:
                for part in unique:
                    pipe.exists(_told(number, part["change"]))
                told = await pipe.execute()
            left = [p for p, was in zip(unique, told, strict=True) if not was]
            if not left:
                continue
            if len(left) == 1 and len(msgs) == 1 and msgs[0].meta.get("parts") is None:
                out.append(msgs[0])  # queued before grouping existed: as it was
                continue
            member = Member(**{**dict.fromkeys(MEMBER_FIELDS, ""), "number": number})
            out.append(self._compose(member, channel, urn, left))
        if out:
            await self._send(out)
        async with self.redis.pipeline(transaction=False) as pipe:
            for msg_id in done:
                pipe.zrem(WAITING, msg_id)
                pipe.hdel(WAITING_BODY, msg_id)
            await pipe.execute()
        return len(out)

    async def remind_due(self, now: dt.datetime | None = None) -> list[str]:
        """Remind the members whose contribution call is in ``due_days`` days or fewer (once per call)."""
        if self.due_days <= 0:
            return []
        today = (now or dt.datetime.now(dt.UTC)).astimezone(PARIS).date()
        low = dt.datetime.combine(today, dt.time(), dt.UTC)
        high = low + dt.timedelta(days=self.due_days)
        results: list[str] = []
        offset = 0
        while True:
            numbers = [str(n) for n in await self.redis.zrangebyscore(
                keys.CONTRIBUTION_CALLS, int(low.timestamp()), int(high.timestamp()), start=offset, num=2000)]  # fmt: skip
            if not numbers:
                return results
            rows = await self.store.read_many(numbers)
            items = [n for row in rows if row.get("number") and (n := due_news(Member(**row), today, self.due_days))]
            results += await self.tell(items, now)
            offset += len(numbers)

    async def run(self, stop: asyncio.Event, every_s: float = 30.0) -> None:
        """The scheduler's job: messages kept for the morning (or for grouping) go when due, and the
        reminders of contribution calls about to come are looked for every quarter of an hour."""
        next_due = 0.0
        while not stop.is_set():
            try:
                if time.monotonic() >= next_due:
                    await self.remind_due()
                    next_due = time.monotonic() + DUE_EVERY_S
                await self.send_waiting()
            except (RedisError, ConnectionError, OSError) as exc:
                log.warning("proactive messages: storage unavailable", extra={"error": type(exc).__name__})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), min(every_s, max(1.0, self.group_window_ms / 1000 or every_s)))
