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
* **No health detail.** The text says an amount was paid and when (« Un remboursement de 57,42 € a été
  versé le 5 décembre. Détail : répondez DETAIL. »); the rest is for a verified conversation.
  Templates: ``templates/proactive/`` (French).

The changes told (``news_of``): a claim paid or refused, a complaint answered, a card sent, a membership
acknowledged; each once. Due dates about to pass and grouping several changes of one day are not built.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
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
from members.changes import Change, Record
from members.records import Card, Claim, Complaint, Member, Membership, MemberStore

log = logging.getLogger(__name__)

PARIS = ZoneInfo("Europe/Paris")
WAITING = "mbr:proactive:waiting"  # sorted set: message id, score = when it was due (ms)
WAITING_BODY = "mbr:proactive:waiting:msg"  # hash: message id -> the message (JSON)
TOLD_TTL_S = 400 * 24 * 3600
MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
          "novembre", "décembre")  # fmt: skip
ORDER = ("sms", "email")

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


class Proactive:
    def __init__(self, redis: Any, *, enqueue: Enqueue, channels: tuple[str, ...], templates: jinja2.Environment,
                 sms_hours: OpeningHours | None, email_hours: OpeningHours | None) -> None:  # fmt: skip
        self.redis = redis
        self.enqueue = enqueue
        self.channels = channels
        self.templates = templates
        self.hours = {"sms": sms_hours, "whatsapp": sms_hours, "email": email_hours}
        self.store = MemberStore(redis)

    def open_now(self, channel: str, now: dt.datetime | None = None) -> bool:
        hours = self.hours.get(channel)
        return hours is None or hours.is_open(now or dt.datetime.now(dt.UTC))

    async def changed(self, changes: list[Change]) -> None:
        """Records the back office stored: tell the members of each change worth telling (a bulk request's
        thousands in a few round trips)."""
        await self.tell([n for c in changes if c.record is not None and (n := news_of(c.record)) is not None])

    async def claim_paid(self, claim: Claim, now: dt.datetime | None = None) -> str:
        """What became of the news: sent, waiting (outside the channel's hours), declined, no_channel, already."""
        news = news_of(claim)
        return (await self.tell([news], now))[0] if news else "nothing"

    async def tell(self, items: list[News], now: dt.datetime | None = None) -> list[str]:
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
        now_msgs: list[Message] = []
        waiting: list[Message] = []
        ids: set[str] = set()
        for news, was_told in zip(items, told, strict=True):
            member = members.get(news.member)
            msg_id = f"n.{news.member}.{news.kind}.{news.rid}.{news.change}"
            if was_told or msg_id in ids:
                results.append("already")
            elif member is None:
                results.append("no_channel")
            elif set(member.notify_optout.split(",")) & {"all", news.kind}:
                results.append("declined")
            elif not (picked := self._channel(member, opted)):
                results.append("no_channel")
            else:
                ids.add(msg_id)
                msg = self._message(msg_id, member, news, *picked)
                is_open = self.open_now(msg.channel, now)
                (now_msgs if is_open else waiting).append(msg)
                results.append("sent" if is_open else "waiting")
        if waiting:
            async with self.redis.pipeline(transaction=False) as pipe:
                for msg in waiting:
                    pipe.hset(WAITING_BODY, msg.id, msg.to_json())
                    pipe.zadd(WAITING, {msg.id: int(time.time() * 1000)}, nx=True)
                await pipe.execute()
        if now_msgs:
            await self._send(now_msgs)
        return results

    async def _send(self, msgs: list[Message]) -> None:
        await self.enqueue(msgs)  # de-duplicated on the message id by the outbound stream
        async with self.redis.pipeline(transaction=False) as pipe:
            for msg in msgs:
                _, number, kind, rid, change = msg.id.split(".", 4)
                pipe.set(told_key(number, kind, rid, change), msg.id, ex=TOLD_TTL_S)
            await pipe.execute()
        log.info("members told before asking", extra={"messages": len(msgs)})

    def _message(self, msg_id: str, member: Member, news: News, channel: str, urn: str) -> Message:
        template = f"proactive/{news.template}"
        text = self.templates.get_template(f"{template}.text.j2").render(news.values).strip()
        meta: dict[str, Any] = {"proactive": news.template, "member": member.number}
        if channel == "email":
            subject = self.templates.get_template(f"{template}.email.subject.j2").render(news.values).strip()
            meta.update(thread={"subject": subject}, auto_generated=True)
        return Message(id=msg_id, channel=channel, urn=urn, direction="out", text=text, meta=meta,
                       conversation_id=f"n.{member.number}")  # fmt: skip

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
        """Send the messages whose channel's hours are now open; returns how many went."""
        sent = 0
        for msg_id in await self.redis.zrange(WAITING, 0, 499):
            raw = await self.redis.hget(WAITING_BODY, msg_id)
            if raw is None:
                await self.redis.zrem(WAITING, msg_id)
                continue
            msg = Message.from_json(raw)
            if not self.open_now(msg.channel, now):
                continue
            _, number, kind, rid, change = msg.id.split(".", 4)
            if not await self.redis.exists(told_key(number, kind, rid, change)):
                await self._send([msg])
                sent += 1
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zrem(WAITING, msg_id)
                pipe.hdel(WAITING_BODY, msg_id)
                await pipe.execute()
        return sent

    async def run(self, stop: asyncio.Event, every_s: float = 30.0) -> None:
        """The scheduler's job: messages kept for the morning go when their channel's hours open."""
        while not stop.is_set():
            try:
                await self.send_waiting()
            except (RedisError, ConnectionError, OSError) as exc:
                log.warning("proactive messages: storage unavailable", extra={"error": type(exc).__name__})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)

