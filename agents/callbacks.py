"""Callbacks as work items: what an agent sees of a callback request, taking one, recording how the
call went, and the « Rappels » view (today's and the coming days' callbacks, per slot).

A callback request (``keys.callback`` hash, written by the callback channel) is in
``keys.CALLBACKS_DUE`` scored by when it is due: its slot's start, or the retry time after « pas de
réponse ». It enters the queue ``CALLBACK_LEAD_S`` before that. Taking is exclusive: one script on
the request's hash moves it from ``pending``/``no_answer`` to ``in_progress`` with its holder, so
two agents never both hold it; it stays in ``CALLBACKS_DUE`` (the « Rappels » view lists it as
taken) until an outcome is recorded. A held callback counts against the agent's capacity like a
conversation.

A request is named by its long id (``cb`` + 22 hex) or its short reference (``RAP-7K4Q``). Its
detail shows the member's record when the number is a member's registered phone; opening it is
audited like opening a conversation's record.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING, Any

from gateway import callback_refs, events, keys
from gateway.conversations import paris_day
from gateway.envelope import Message, now_ms
from gateway.hours import DAY_NAMES, PARIS, OpeningHours, holiday_name
from members.audit import audit
from staff.users import User
from staff.web import Refused

if TYPE_CHECKING:
    from agents.desk import Desk

CALLBACK_LEAD_S = 5 * 60  # a callback shows in the queue 5 minutes before its slot
CALLBACK_RETRY_S = 30 * 60
CALLBACK_MAX_ATTEMPTS = 3
WAITING = ("pending", "no_answer")
OPEN = (*WAITING, "in_progress")
SKILL_OF_CALLBACK = {"devis": "quotes", "reclamation": "complaints", "adhesion": "sales"}
# The form's subjects (channels/callback/validation.py REASONS), as agents read them.
SUBJECTS = {
    "remboursement": "Remboursement",
    "reclamation": "Réclamation",
    "adhesion": "Adhésion",
    "devis": "Devis (optique, dentaire)",
    "cotisation": "Cotisation",
    "carte": "Carte de tiers payant",
    "autre": "Autre demande",
}
UNKNOWN_NAME = "inconnu"

# KEYS[1] = the request's hash. ARGV = login, now (ms), may_take_waiting ("1"/"0").
# Returns "ok" (now held by login, or already was), "held" (by someone else), "closed", "unknown".
_TAKE = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'unknown' end
if status == 'in_progress' then
  if redis.call('HGET', KEYS[1], 'held_by') == ARGV[1] then return 'ok' end
  return 'held'
end
if status ~= 'pending' and status ~= 'no_answer' then return 'closed' end
redis.call('HSET', KEYS[1], 'status', 'in_progress', 'held_by', ARGV[1], 'held_ms', ARGV[2], 'waiting_status', status)
return 'ok'
"""


class CallbackError(Refused):
    """A callback operation refused, with the reason in French (HTTP status in ``status``)."""


def skill_of_callback(cb: dict[str, str]) -> str:
    return SKILL_OF_CALLBACK.get(cb.get("reason", ""), "benefits")


def slot_key(cb: dict[str, str]) -> str:
    return f"{cb.get('slot_start', '')[11:16]}-{cb.get('slot_end', '')[11:16]}"


def slot_label(cb: dict[str, str]) -> str:
    def hour(hhmm: str) -> str:
        h, _, m = hhmm.partition(":")
        return f"{int(h)} h" + (f" {m}" if m and m != "00" else "") if h.isdigit() else hhmm

    return f"{hour(cb.get('slot_start', '')[11:16])} – {hour(cb.get('slot_end', '')[11:16])}"


def public(cb: dict[str, str], due_s: float | None) -> dict[str, Any]:
    """What the console shows of a callback request."""
    return {
        "id": cb.get("id", ""),
        "ref": cb.get("ref", ""),
        "name": cb.get("name") or UNKNOWN_NAME,
        "named": bool(cb.get("name")),
        "phone": cb.get("phone", ""),
        "subject": SUBJECTS.get(cb.get("reason", ""), cb.get("reason", "")),
        "comment": cb.get("comment", ""),
        "slot_start": cb.get("slot_start", ""),
        "slot_end": cb.get("slot_end", ""),
        "slot": slot_label(cb),
        "status": cb.get("status", ""),
        "attempts": int(cb.get("attempts") or 0),
        "held_by": cb.get("held_by", ""),
        "skill": skill_of_callback(cb),
        "due_ms": int(due_s * 1000) if due_s is not None else None,
    }


class Callbacks:
    def __init__(self, desk: Desk, hours: OpeningHours) -> None:
        self.desk = desk
        self.redis = desk.redis
        self.hours = hours
        self._take = self.redis.register_script(_TAKE)

    # Finding ---------------------------------------------------------------------------------
    async def find(self, ref: str) -> tuple[str, dict[str, str]]:
        """The request named by a long id or a short reference, or 404."""
        cb_id: str | None = ref if ref and await self.redis.exists(keys.callback(ref)) else None
        if cb_id is None:
            cb_id = await callback_refs.resolve(self.redis, ref)
        cb: dict[str, str] = await self.redis.hgetall(keys.callback(cb_id)) if cb_id else {}
        if not cb_id or not cb:
            raise CallbackError("Demande de rappel inconnue.", 404)
        return cb_id, cb

    def may_see(self, user: User, cb: dict[str, str]) -> bool:
        if user.is_supervisor or cb.get("held_by") == user.login:
            return True
        return cb.get("status") in WAITING and skill_of_callback(cb) in user.skills

    # Reading ---------------------------------------------------------------------------------
    async def due_items(self) -> list[tuple[dict[str, str], float]]:
        """Waiting callbacks due now or within the lead, with their due time (epoch s)."""
        horizon = int(time.time()) + CALLBACK_LEAD_S
        out = []
        for cb_id, due in await self.redis.zrangebyscore(keys.CALLBACKS_DUE, "-inf", horizon, withscores=True):
            cb = await self.redis.hgetall(keys.callback(cb_id))
            if cb.get("status") in WAITING:
                out.append(({"id": cb_id, **cb}, float(due)))
        return out

    async def mine(self, user: User) -> list[dict[str, Any]]:
        out = []
        for cb_id in sorted(await self.redis.smembers(keys.agent_callbacks(user.login))):
            cb = await self.redis.hgetall(keys.callback(cb_id))
            if cb.get("status") == "in_progress" and cb.get("held_by") == user.login:
                out.append(public({"id": cb_id, **cb}, await self.redis.zscore(keys.CALLBACKS_DUE, cb_id)))
        return sorted(out, key=lambda c: c["due_ms"] or 0)

    async def detail(self, user: User, ref: str) -> dict[str, Any]:
        """The request, the member's record when the number is a member's (audited), past contacts."""
        cb_id, cb = await self.find(ref)
        if not self.may_see(user, cb):
            raise CallbackError("Ce rappel n'est pas dans votre file.", 403)
        phone = cb.get("phone", "")
        member_id = await self.redis.get(keys.member_by_phone(phone)) if phone else None
        fiche = await self.desk.member_record(str(member_id)) if member_id else None
        if fiche is not None:
            await audit(self.redis, str(member_id), cb_id, "callback", "agent_opened_record", [], agent=user.login)
        contacts = set(await self.redis.smembers(keys.member_contacts(str(member_id)))) if member_id else set()
        contact = await self.redis.get(keys.address(f"tel:{phone}")) if phone else None
        if contact:
            contacts.add(str(contact))
        return {
            "callback": public({"id": cb_id, **cb}, await self.redis.zscore(keys.CALLBACKS_DUE, cb_id)),
            "member": fiche,
            "past": await self.desk.past_conversations(contacts, exclude=""),
        }

    async def ahead(self, user: User, days: int = 7) -> dict[str, Any]:
        """Today's and the coming days' callbacks, per day and slot (late ones count as today's)."""
        today = dt.datetime.now(PARIS).date()
        end = dt.datetime.combine(today + dt.timedelta(days=days), dt.time(), PARIS)
        by_day: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for cb_id, due in await self.redis.zrangebyscore(keys.CALLBACKS_DUE, "-inf", end.timestamp(), withscores=True):
            cb = await self.redis.hgetall(keys.callback(cb_id))
            if cb.get("status") not in OPEN:
                continue
            if not user.is_supervisor and skill_of_callback(cb) not in user.skills:
                continue
            due_day = max(today, dt.datetime.fromtimestamp(due, PARIS).date()).isoformat()
            by_day.setdefault(due_day, {}).setdefault(slot_key(cb), []).append(public({"id": cb_id, **cb}, due))
        out = []
        for n in range(days):
            day = today + dt.timedelta(days=n)
            slots = by_day.get(day.isoformat(), {})
            holiday = holiday_name(day)
            closed = f"fermé : {holiday}" if holiday else "" if self.hours.days[day.weekday()] else "fermé"
            out.append(
                {
                    "day": day.isoformat(),
                    "label": ("Aujourd'hui, " if n == 0 else "Demain, " if n == 1 else "")
                    + f"{DAY_NAMES[day.weekday()]} {day:%d/%m}",
                    "closed": closed,
                    "count": sum(len(v) for v in slots.values()),
                    "slots": [
                        {"key": key, "label": items[0]["slot"], "callbacks": sorted(items, key=lambda c: c["due_ms"])}
                        for key, items in sorted(slots.items())
                    ],
                }
            )
        return {"days": out}

    # Taking ----------------------------------------------------------------------------------
    async def take(self, user: User, ref: str, *, check_capacity: bool = True) -> dict[str, Any]:
        cb_id, cb = await self.find(ref)
        if cb.get("status") in WAITING and not user.is_supervisor and skill_of_callback(cb) not in user.skills:
            raise CallbackError("Ce rappel relève d'une autre compétence.", 403)
        if check_capacity and cb.get("status") in WAITING and await self.desk.load(user) >= user.capacity:
            raise CallbackError(f"Vous avez déjà {user.capacity} conversations ou rappels en cours : "
                                "terminez-en un d'abord.")  # fmt: skip
        result = await self._take(keys=[keys.callback(cb_id)], args=[user.login, now_ms()])
        if result == "held":
            raise CallbackError("Un autre conseiller vient de prendre ce rappel.")
        if result == "closed":
            raise CallbackError("Ce rappel est déjà traité.")
        if result == "unknown":
            raise CallbackError("Demande de rappel inconnue.", 404)
        await self.redis.sadd(keys.agent_callbacks(user.login), cb_id)
        await self.redis.hincrby(keys.day_stats(paris_day()), "callbacks_taken", 1)
        await self.desk.notify(cb_id)
        cb = await self.redis.hgetall(keys.callback(cb_id))
        return {"kind": "callback", **public({"id": cb_id, **cb}, await self.redis.zscore(keys.CALLBACKS_DUE, cb_id))}

    # How the call went -------------------------------------------------------------------------
    async def _member_of(self, phone: str) -> str:
        """The member whose registered phone asked for the callback ("" for anyone else)."""
        return str(await self.redis.get(keys.member_by_phone(phone)) or "") if phone else ""

    async def outcome(self, user: User, ref: str, outcome: str) -> dict[str, str]:
        """done / no_answer (due again in 30 minutes; abandoned after 3 tries) / wrong_number.

        Recording an outcome on a waiting callback takes it first (exclusive, whatever the capacity:
        the call is over); on one another agent holds, only a supervisor may."""
        if outcome not in ("done", "no_answer", "wrong_number"):
            raise CallbackError("Issue inconnue : done, no_answer ou wrong_number.", 400)
        cb_id, cb = await self.find(ref)
        if cb.get("status") in WAITING:
            await self.take(user, cb_id, check_capacity=False)
        elif cb.get("status") == "in_progress":
            if cb.get("held_by") != user.login and not user.is_supervisor:
                raise CallbackError("Un autre conseiller a pris ce rappel.", 403)
        else:
            raise CallbackError("Ce rappel est déjà traité.")
        key = keys.callback(cb_id)
        holder = await self.redis.hget(key, "held_by") or user.login
        at = now_ms()
        phone = (await self.redis.hget(key, "phone")) or ""
        if outcome == "done":
            await self.redis.hset(key, mapping={"status": "done", "done_ms": str(at), "done_by": user.login})
            await self.redis.zrem(keys.CALLBACKS_DUE, cb_id)
            text = "Merci pour notre échange téléphonique. N'hésitez pas à nous écrire si besoin."
        elif outcome == "no_answer":
            attempts = int(await self.redis.hincrby(key, "attempts", 1))
            retry_at = int(time.time()) + CALLBACK_RETRY_S
            await self.redis.hset(key, mapping={"status": "no_answer", "last_attempt_ms": str(at)})
            await self.redis.zadd(keys.CALLBACKS_DUE, {cb_id: retry_at})
            when = dt.datetime.fromtimestamp(retry_at, PARIS).strftime("%H h %M")
            text = f"Nous avons essayé de vous appeler sans succès. Nous réessaierons vers {when}."
            if attempts >= CALLBACK_MAX_ATTEMPTS:
                await self.redis.hset(key, "status", "abandoned")
                await self.redis.zrem(keys.CALLBACKS_DUE, cb_id)
                text = "Nous n'avons pas réussi à vous joindre. Écrivez-nous ou demandez un nouveau rappel."
        else:
            await self.redis.hset(key, mapping={"status": "wrong_number", "done_ms": str(at), "done_by": user.login})
            await self.redis.zrem(keys.CALLBACKS_DUE, cb_id)
            text = ""  # nobody to inform at a wrong number
        await self.redis.hdel(key, "held_by", "held_ms", "waiting_status")
        await self.redis.srem(keys.agent_callbacks(holder), cb_id)
        await self.redis.hincrby(keys.day_stats(paris_day()), f"callbacks_{outcome}", 1)
        final = await self.redis.hget(key, "status") or outcome
        await events.emit(self.redis, events.CALLBACK_OUTCOME, f"{cb_id} {at}", {
            "callback": cb_id, "reference": cb.get("ref", ""), "outcome": outcome, "status": final,
            "member": await self._member_of(phone), "agent": user.login, "at_ms": at})  # fmt: skip
        if text and phone:
            await self._tell(cb_id, cb, outcome, phone, text)
        await self.desk.notify(cb_id)
        data: dict[str, str] = await self.redis.hgetall(key)
        return data

    async def _tell(self, cb_id: str, cb: dict[str, str], outcome: str, phone: str, text: str) -> None:
        urn = f"tel:{phone}"
        contact = await self.redis.get(keys.address(urn))
        conv = await self.redis.get(keys.open_conversation(contact, "callback")) if contact else None
        if not conv:
            return
        msg = Message(
            id=f"cb.{cb_id}.{outcome}.{cb.get('attempts', '0')}",
            channel="sms" if self.desk.sms_enabled else "callback",
            urn=urn,
            direction="out",
            text=text,
            conversation_id=str(conv),
        )
        await self.desk.router.enqueue(msg)
