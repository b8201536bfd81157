"""Phone calls at the agents' desk: what a caller waiting for an agent hears, the calls' figures, an
abandoned caller's SMS, a call for a human outside opening hours, and the calls an agent places.

The voice channel (``channels/voice``) tells ``CallDesk`` what happens to a call (its ``events``, wired
by ``server/product.py``); the desk places calls through the channel's ``ring_agent`` and
``call_member`` (``PhoneCalls``, wired the same way). Neither room imports the other.

Figures, per Europe/Paris day, in ``keys.day_stats`` (each also per skill, ``<name>:<skill>``):
``calls_offered`` (a call put in the agents' queue), ``calls_answered`` (bridged to an agent),
``calls_answered_60`` (bridged within 60 s), ``calls_abandoned`` (hung up while waiting),
``calls_wait_s`` (total wait of answered calls), ``calls_talked`` and ``calls_talk_s`` (talk time).

A caller who hangs up while waiting is counted abandoned once per CallSid (``keys.call_abandoned``). When
the conversation was verified (the bot's ``verified_member``), and only then, the member's registered phone
gets an SMS offering a callback: reply « RAPPEL » and a callback request is booked for the current or next
open slot (the router's detour: ``conversation_for`` / ``answer`` below), confirmed by SMS with its short
reference; or choose another slot on the callback form, whose link is prefilled with that slot. The SMS
names nothing of the member's file; an unverified caller gets nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import unicodedata
from typing import Protocol
from urllib.parse import urlencode

from redis.asyncio import Redis

from agents.desk import Desk, DeskError, skill_of
from agents.waiting import ONLINE_WINDOW_MS
from gateway import callback_refs, keys
from gateway.conversations import paris_day
from gateway.envelope import Message, now_ms
from gateway.hours import DAY_NAMES, PARIS, OpeningHours, Slot, fr_hour
from members.records import MemberStore
from staff.users import User, Users

log = logging.getLogger(__name__)

ANSWER_TARGET_S = 60
ABANDONED_SMS = (
    "Vous avez raccroché avant qu'un conseiller ne vous réponde, désolés pour l'attente. Nous pouvons vous "
    "rappeler : répondez RAPPEL à ce SMS et un conseiller vous appellera {when}. Ou choisissez un autre "
    "créneau : {link}"
)
ABANDONED_SMS_NO_SLOT = (
    "Vous avez raccroché avant qu'un conseiller ne vous réponde, désolés pour l'attente. Nous pouvons vous "
    "rappeler : choisissez votre créneau sur {link}, ou rappelez-nous."
)
OFFER_TTL_S = 24 * 3600
OFFER_WORDS = frozenset({"RAPPEL", "RAPPELEZ MOI", "RAPPELER"})
BOOKED_SMS = (
    "Votre demande de rappel {ref} est enregistrée : un conseiller vous appellera le {date} entre {start} et {end}."
)
NO_SLOT_SMS = "Nous n'avons pas de créneau de rappel dans les deux semaines : choisissez-en un sur {link}."

# An agent without a phone: the console shows this with a link to « Mon profil » (``/console/profile``).
NO_PHONE = "Aucun numéro de téléphone dans votre profil : ajoutez-le dans « Mon profil » pour prendre des appels."


class PhoneCalls(Protocol):
    """The calls the desk places (the voice channel's methods)."""

    async def ring_agent(self, conv_id: str, login: str, phone: str) -> str: ...

    async def call_member(self, callback_id: str, login: str, agent_phone: str, member_phone: str) -> str: ...


def next_slot(hours: OpeningHours, now: dt.datetime) -> tuple[dt.date, Slot] | None:
    """The next opening slot that starts after ``now`` (Europe/Paris), within two weeks."""
    local = now.astimezone(PARIS)
    for n in range(15):
        day = local.date() + dt.timedelta(days=n)
        for slot in hours.slots_on(day):
            if n > 0 or slot.start > local.time():
                return day, slot
    return None


def current_or_next_slot(hours: OpeningHours, now: dt.datetime) -> tuple[dt.date, Slot] | None:
    """The opening slot in progress (with at least 15 minutes left), else the next one (Europe/Paris)."""
    local = now.astimezone(PARIS)
    for slot in hours.slots_on(local.date()):
        end = dt.datetime.combine(local.date(), slot.end, PARIS)
        if slot.start <= local.time() and end - local >= dt.timedelta(minutes=15):
            return local.date(), slot
    return next_slot(hours, now)


def offer_word(text: str) -> bool:
    """« RAPPEL », « rappel. », « Rappelez-moi » (accents, case and punctuation aside)."""
    plain = unicodedata.normalize("NFKD", text or "").encode("ascii", "ignore").decode().upper()
    words = " ".join("".join(c if c.isalnum() else " " for c in plain).split())
    return words in OFFER_WORDS


class CallDesk:
    def __init__(self, redis: Redis, desk: Desk, *, public_url: str, hours: OpeningHours, sms: bool) -> None:
        self.redis = redis
        self.desk = desk
        self.public_url = public_url.rstrip("/")
        self.hours = hours
        self.sms = sms

    # What the caller hears ---------------------------------------------------------------------
    async def waiting_text(self, conv_id: str) -> str:
        rank = await self.redis.zrank(keys.HANDOFF_QUEUE, conv_id)
        position = (int(rank) if rank is not None else 0) + 1
        online = await self.redis.zcount(keys.AGENTS_ONLINE, now_ms() - ONLINE_WINDOW_MS, "+inf")
        recent = [int(w) for w in await self.redis.lrange(keys.PICKUPS, 0, 19)]
        typical_s = (sum(recent) / len(recent) / 1000) if recent else 60.0
        minutes = max(1, math.ceil(typical_s * position / max(1, int(online)) / 60))
        where = "Vous êtes le prochain appel." if position == 1 else f"Vous êtes en position {position}."
        wait = f"Temps d'attente estimé : environ {minutes} minute{'s' if minutes > 1 else ''}."
        return f"{where} {wait} Merci de patienter, un conseiller va vous répondre."

    # Call events (the voice channel's ``events``) -----------------------------------------------
    async def _count(self, conv_id: str, *names: str, by: int = 1) -> None:
        conv = await self.redis.hgetall(keys.conversation(conv_id))
        skill = skill_of(conv)
        day = keys.day_stats(paris_day())
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hincrby(day, name, by)
                pipe.hincrby(day, f"{name}:{skill}", by)
            await pipe.execute()

    async def enqueued(self, conv_id: str, call_sid: str) -> None:
        await self._count(conv_id, "calls_offered")
        await self.redis.hset(keys.conversation(conv_id), "call_waiting", "1")
        await self.desk.notify(conv_id)

    async def left_queue(self, conv_id: str, call_sid: str, result: str, queue_time_s: int) -> None:
        await self.redis.hdel(keys.conversation(conv_id), "call_waiting")
        if result == "bridged":
            await self._count(conv_id, "calls_answered")
            await self._count(conv_id, "calls_wait_s", by=max(0, queue_time_s))
            if queue_time_s <= ANSWER_TARGET_S:
                await self._count(conv_id, "calls_answered_60")
        elif result == "hangup":
            # Counted once per call, whichever of Twilio's queue action and status callback tells it first (or
            # again); the offer is idempotent (one SMS id per conversation), so a retried event completes it.
            if await self.redis.set(keys.call_abandoned(call_sid), conv_id, nx=True, ex=OFFER_TTL_S):
                await self._count(conv_id, "calls_abandoned")
            await self._abandoned(conv_id, call_sid)
        else:
            log.warning("call left the queue unanswered", extra={"conversation": conv_id, "result": result})
        await self.desk.notify(conv_id)

    async def _abandoned(self, conv_id: str, call_sid: str) -> None:
        """Hung up while waiting: out of the agents' queue; a verified member is offered a callback by SMS."""
        key = keys.conversation(conv_id)
        conv = await self.redis.hgetall(key)
        if conv.get("status") == "handoff":
            await self.redis.zrem(keys.HANDOFF_QUEUE, conv_id)
            await self.redis.hset(key, mapping={"status": "closed", "closed_ms": str(now_ms()),
                                                "closed_by": "", "closed_reason": "abandoned"})  # fmt: skip
        member_id = conv.get("verified_member")  # set by the bot only once the caller proved who they are
        member = await MemberStore(self.redis).get(member_id) if member_id else None
        if member is None or not member.phone or not self.sms:
            return
        urn = f"tel:{member.phone}"
        found = current_or_next_slot(self.hours, dt.datetime.now(PARIS))
        if found is None:
            text = ABANDONED_SMS_NO_SLOT.format(link=f"{self.public_url}/callback")
        else:
            day, slot = found
            text = ABANDONED_SMS.format(when=self._when(day, slot), link=self._form_link(day, slot))
            offer = keys.callback_offer(urn)
            await self.redis.hset(offer, mapping={"conv": conv_id, "call": call_sid, "member": member.number})
            await self.redis.expire(offer, OFFER_TTL_S)
        msg = Message(
            id=f"{conv_id}.abandoned",
            channel="sms",
            urn=urn,
            direction="out",
            text=text,
            contact_id=conv.get("contact_id") or None,
            conversation_id=conv_id,
        )
        await self.desk.router.enqueue(msg)
        log.info("abandoned caller offered a callback", extra={"conversation": conv_id, "call": call_sid[-6:]})

    def _form_link(self, day: dt.date, slot: Slot) -> str:
        """The callback form, prefilled with that slot (the member types their number and confirms)."""
        return f"{self.public_url}/callback?{urlencode({'date': day.isoformat(), 'slot': slot.key})}"

    @staticmethod
    def _when(day: dt.date, slot: Slot) -> str:
        today = dt.datetime.now(PARIS).date()
        name = "aujourd'hui" if day == today else "demain" if day == today + dt.timedelta(days=1) else (
            f"{DAY_NAMES[day.weekday()]} {day.day}")  # fmt: skip
        return f"{name} entre {fr_hour(slot.start)} et {fr_hour(slot.end)}"

    async def _book(self, conv_id: str, phone: str, day: dt.date, slot: Slot, comment: str) -> tuple[str, str, bool]:
        """A callback request for ``slot``, once per conversation: (request id, short reference, created)."""
        start = dt.datetime.combine(day, slot.start, PARIS)
        end = dt.datetime.combine(day, slot.end, PARIS)
        request_id = "cb" + conv_id.replace(".", "")[-22:].rjust(22, "0")
        reference = await callback_refs.claim(self.redis, request_id)
        created = await self.redis.hsetnx(keys.callback(request_id), "id", request_id)
        if created:
            await self.redis.hset(
                keys.callback(request_id),
                mapping={"ref": reference, "phone": phone, "slot_start": start.isoformat(), "slot_end": end.isoformat(),
                         "reason": "autre", "comment": comment, "name": "", "status": "pending",
                         "created_ms": str(now_ms()), "fingerprint": ""},
            )  # fmt: skip
            await self.redis.zadd(keys.CALLBACKS_DUE, {request_id: int(start.timestamp())}, nx=True)
        else:
            await callback_refs.release(self.redis, reference, request_id)
            reference = await self.redis.hget(keys.callback(request_id), "ref") or reference
        return request_id, reference, bool(created)

    # The router's detour: « RAPPEL » answering the SMS of an abandoned call ------------------------
    async def conversation_for(self, contact_id: str, msg: Message) -> str | None:
        """The abandoned call's conversation, when this SMS is « RAPPEL » from the phone it was offered to."""
        if msg.channel != "sms" or not offer_word(msg.text):
            return None
        route = f"{keys.callback_offer(msg.urn)}:route:{msg.id}"
        routed = await self.redis.get(route)
        if routed:
            return str(routed)
        conv_id = await self.redis.hget(keys.callback_offer(msg.urn), "conv")
        if not conv_id:
            return None
        await self.redis.set(route, conv_id, ex=OFFER_TTL_S)
        return str(conv_id)

    async def answer(self, conv_id: str, contact_id: str, msg: Message) -> list[str]:
        """Book the current or next open slot for the number the offer went to; the same answer if asked again."""
        phone = msg.urn.removeprefix("tel:")
        found = current_or_next_slot(self.hours, dt.datetime.now(PARIS))
        booked = await self.redis.hget(keys.conversation(conv_id), "callback_id")
        if booked:
            cb = await self.redis.hgetall(keys.callback(booked))
            start, end = dt.datetime.fromisoformat(cb["slot_start"]), dt.datetime.fromisoformat(cb["slot_end"])
            return [BOOKED_SMS.format(ref=cb.get("ref", ""), date=f"{start:%d/%m}", start=fr_hour(start.time()),
                                      end=fr_hour(end.time()))]  # fmt: skip
        if found is None:
            return [NO_SLOT_SMS.format(link=f"{self.public_url}/callback")]
        day, slot = found
        request_id, reference, created = await self._book(
            conv_id, phone, day, slot, "Appel abandonné en attente d'un conseiller : rappel demandé par SMS (RAPPEL)."
        )
        await self.redis.hset(keys.conversation(conv_id), "callback_id", request_id)
        if created:
            log.info("callback booked from an abandoned call's SMS", extra={"conversation": conv_id})
        await self.desk.notify(request_id)
        return [BOOKED_SMS.format(ref=reference, date=f"{day:%d/%m}", start=fr_hour(slot.start), end=fr_hour(slot.end))]

    async def call_ended(self, conv_id: str, call_sid: str, talk_s: int | None) -> None:
        if talk_s is not None:
            await self._count(conv_id, "calls_talked")
            await self._count(conv_id, "calls_talk_s", by=talk_s)
        await self.redis.hdel(keys.conversation(conv_id), "call_waiting")
        await self.desk.notify(conv_id)

    async def leg_status(self, leg: dict[str, str], status: str) -> None:
        """A call we placed moved on. The agent's phone not answering gives the caller back to the queue;
        a callback's member answering (or not) is the callback's outcome, recorded without a click."""
        unanswered = status in ("no-answer", "busy", "failed", "canceled")
        if leg.get("kind") == "agent" and unanswered:
            conv_id = leg.get("conv", "")
            conv = await self.redis.hgetall(keys.conversation(conv_id))
            if conv.get("status") == "assigned" and conv.get("call_waiting") == "1":
                await self.redis.srem(keys.agent_conversations(conv.get("assigned_agent", "")), conv_id)
                await self.redis.hset(keys.conversation(conv_id), "status", "handoff")
                await self.redis.hdel(keys.conversation(conv_id), "assigned_agent", "assigned_ms")
                await self.redis.zadd(keys.HANDOFF_QUEUE, {conv_id: int(conv.get("handoff_ms") or now_ms())})
                await self.desk.notify(conv_id)
        elif leg.get("kind") == "callback" and leg.get("dialed") == "1":
            agent = await Users(self.redis).get(leg.get("agent", ""))
            if agent is None:
                return
            outcome = "done" if status == "completed" else "no_answer"
            await self.redis.hset(keys.callback(leg.get("callback", "")), "last_call_status", status)
            try:
                await self.desk.callbacks.outcome(agent, leg.get("callback", ""), outcome)
            except DeskError as exc:
                log.info("callback outcome not recorded", extra={"reason": str(exc)})

    async def after_hours(self, conv_id: str, call_sid: str) -> str:
        """A human asked for outside opening hours: a callback request for the next open slot, confirmed
        by SMS. Returns what the caller is told."""
        conv = await self.redis.hgetall(keys.conversation(conv_id))
        found = next_slot(self.hours, dt.datetime.now(PARIS))
        member_id = conv.get("verified_member")
        member = await MemberStore(self.redis).get(member_id) if member_id else None
        urn = conv.get("urn", "")
        phone = member.phone if member is not None and member.phone else urn.removeprefix("tel:")
        if found is None or not phone.startswith("+"):
            return f"Nos conseillers vous répondent {self.hours.describe()}. Rappelez-nous à ces horaires. Au revoir."
        day, slot = found
        request_id, reference, created = await self._book(
            conv_id, phone, day, slot, "Appel en dehors des horaires : demande un conseiller."
        )
        await self.redis.hset(keys.conversation(conv_id), mapping={"callback_id": request_id, "status": "closed",
                                                                   "closed_reason": "after_hours"})  # fmt: skip
        await self.redis.zrem(keys.HANDOFF_QUEUE, conv_id)
        when = f"{DAY_NAMES[day.weekday()]} {day.day} entre {fr_hour(slot.start)} et {fr_hour(slot.end)}"
        if self.sms and created:
            await self.desk.router.enqueue(
                Message(
                    id=f"{conv_id}.afterhours", channel="sms", urn=f"tel:{phone}", direction="out",
                    text=f"Votre demande de rappel {reference} est enregistrée : un conseiller vous appellera le "
                    f"{day:%d/%m} entre {fr_hour(slot.start)} et {fr_hour(slot.end)}.",
                    contact_id=conv.get("contact_id") or None, conversation_id=conv_id,
                )
            )  # fmt: skip
        await self.desk.notify(request_id)
        return (
            f"Nos conseillers sont absents pour le moment. Un conseiller vous rappellera {when}. "
            "Vous allez recevoir un SMS de confirmation. Au revoir."
        )

    # Calls the agent places ------------------------------------------------------------------------
    async def take_call(self, user: User, conv_id: str, phones: PhoneCalls | None) -> dict[str, object]:
        """« Prendre l'appel »: the conversation is the agent's, and their phone rings to bridge the caller."""
        if phones is None:
            raise DeskError("Les appels téléphoniques ne sont pas configurés.", 409)
        if not user.phone:
            raise DeskError(NO_PHONE, 409, code="no_phone")
        conv = await self.redis.hgetall(keys.conversation(conv_id))
        if conv.get("channel") != "voice" or conv.get("call_waiting") != "1":
            raise DeskError("Cet appel n'attend plus : l'adhérent a peut-être raccroché.")
        if conv.get("status") == "assigned" and conv.get("assigned_agent") == user.login:
            taken: dict[str, object] = {"id": conv_id, "status": "assigned"}  # taken as a chat first: ring now
        else:
            taken = await self.desk.take(user, conv_id)
        try:
            leg = await phones.ring_agent(conv_id, user.login, user.phone)
        except Exception as exc:
            log.error("agent's phone could not be called", extra={"conversation": conv_id, "error": type(exc).__name__})
            await self.leg_status({"kind": "agent", "conv": conv_id}, "failed")
            raise DeskError("Votre téléphone n'a pas pu être appelé : l'appel retourne dans la file.", 502) from exc
        return {**taken, "ringing": leg[-6:]}

    async def call_back(self, user: User, ref: str, phones: PhoneCalls | None) -> dict[str, object]:
        """« Appeler » on a callback: the agent's phone rings, then the member's, from the mutuelle's number."""
        if phones is None:
            raise DeskError("Les appels téléphoniques ne sont pas configurés.", 409)
        if not user.phone:
            raise DeskError(NO_PHONE, 409, code="no_phone")
        taken = await self.desk.callbacks.take(user, ref)
        cb_id = str(taken["id"])
        phone = str(taken.get("phone") or "")
        try:
            await phones.call_member(cb_id, user.login, user.phone, phone)
        except Exception as exc:
            log.error("callback could not be placed", extra={"callback": cb_id, "error": type(exc).__name__})
            raise DeskError("L'appel n'a pas pu être passé : réessayez ou appelez depuis votre poste.", 502) from exc
        await self.redis.hset(keys.callback(cb_id), "calling_ms", str(now_ms()))
        await self.desk.notify(cb_id)
        return {**taken, "calling": True}


def call_figures(counters: dict[str, int], skill: str | None = None) -> dict[str, float | int | None]:
    """A day's call figures (all skills, or one): offered, answered, abandoned, rates, average wait and talk."""
    suffix = f":{skill}" if skill else ""

    def c(name: str) -> int:
        return counters.get(name + suffix, 0)

    offered, answered = c("calls_offered"), c("calls_answered")
    return {
        "offered": offered,
        "answered": answered,
        "abandoned": c("calls_abandoned"),
        "answered_60": c("calls_answered_60"),
        "answer_rate": round(answered / offered, 3) if offered else None,
        "answered_60_rate": round(c("calls_answered_60") / offered, 3) if offered else None,
        "avg_wait_s": round(c("calls_wait_s") / answered) if answered else None,
        "avg_talk_s": round(c("calls_talk_s") / c("calls_talked")) if c("calls_talked") else None,
    }
