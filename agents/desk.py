"""The agents' desk: the queue of handed-off conversations and due callbacks, who holds what,
and what an agent does with a conversation (reply, note, transfer, close, give back to the bot).

Queue order: urgent complaints first, then waiting time. Routing: each item has a skill
(benefits, quotes, complaints, sales) from the bot's intent or the callback's reason; an agent
sees and takes items of their skills, up to their capacity. Taking is a ``ZREM`` on the queue:
whoever removes the entry holds the conversation, so two agents never both take it. Callbacks are
taken the same way, exclusively, and counted against the same capacity (``agents/callbacks.py``).

Every change is published on ``keys.CONSOLE_NOTIFY`` so every console process refreshes.
Daily figures (Europe/Paris days) are counted in ``keys.day_stats``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from redis.asyncio import Redis

from agents.callbacks import CALLBACK_LEAD_S, CALLBACK_RETRY_S, Callbacks, public, skill_of_callback
from agents.waiting import ONLINE_WINDOW_MS
from gateway import events, keys
from gateway.conversations import paris_day
from gateway.envelope import Message, now_ms
from gateway.hours import DEFAULT_HOURS, OpeningHours
from gateway.router import Router
from members import links
from members.audit import audit
from members.records import Complaint, MemberStore
from staff.users import SKILL_LABELS, SKILLS, User, Users
from staff.web import Refused

log = logging.getLogger(__name__)

PARIS = ZoneInfo("Europe/Paris")
PICKUP_TARGET_S = 60
__all__ = ["CALLBACK_LEAD_S", "CALLBACK_RETRY_S", "Desk", "DeskError", "QueueItem", "paris_day"]

SKILL_OF_INTENT = {
    "reimbursement_status": "benefits",
    "card_status": "benefits",
    "contribution_question": "benefits",
    "membership_status": "sales",
    "quote_status": "quotes",
    "file_complaint": "complaints",
    "complaint_status": "complaints",
}
REASON_LABELS = {
    "ask_human": "demande un conseiller",
    "complaint": "réclamation déposée",
    "verification_failed": "identité non vérifiée",
    "misunderstood": "incompris deux fois",
    "callback": "demande de rappel",
    "unproven_sender": "expéditeur non vérifié",
}

SURVEY_CSAT = (
    "Merci d'avoir échangé avec nous. Votre avis compte : de 1 (pas du tout) à 5 (tout à fait), "
    "êtes-vous satisfait(e) de cet échange ? Répondez par un chiffre."
)


class DeskError(Refused):
    """An operation the agent cannot do, with the reason in French (HTTP status in ``status``)."""


def skill_of(conv: dict[str, str]) -> str:
    if conv.get("handoff_reason") == "complaint":
        return "complaints"
    return conv.get("skill") or SKILL_OF_INTENT.get(conv.get("handoff_intent", ""), "benefits")


@dataclass(frozen=True, slots=True)
class QueueItem:
    kind: str  # "conversation" or "callback"
    id: str
    skill: str
    urgent: bool
    since_ms: int  # waiting since (handoff), or the callback slot's start
    channel: str
    reason: str
    summary: str
    member: str
    callback: dict[str, Any] = field(default_factory=dict)  # a callback's details (name, number, subject...)

    def public(self) -> dict[str, Any]:
        return {
            **({"callback": self.callback} if self.callback else {}),
            "kind": self.kind,
            "id": self.id,
            "skill": self.skill,
            "urgent": self.urgent,
            "since_ms": self.since_ms,
            "channel": self.channel,
            "reason": REASON_LABELS.get(self.reason, self.reason),
            "summary": self.summary,
            "member": self.member,
        }


class Desk:
    def __init__(
        self,
        redis: Redis,
        router: Router,
        *,
        rasa_url: str = "",
        sms_enabled: bool = False,
        hours: OpeningHours = DEFAULT_HOURS,
    ) -> None:
        self.redis = redis
        self.router = router
        self.rasa_url = rasa_url.rstrip("/")
        self.sms_enabled = sms_enabled
        self.callbacks = Callbacks(self, hours)

    # Reading ------------------------------------------------------------------------------
    async def queue(self, user: User | None = None) -> list[QueueItem]:
        """Waiting items the user may take (all of them for a supervisor), in priority order."""
        items: list[QueueItem] = []
        for conv_id in await self.redis.zrange(keys.HANDOFF_QUEUE, 0, -1):
            conv = await self.redis.hgetall(keys.conversation(conv_id))
            if conv.get("status") != "handoff":
                continue
            items.append(
                QueueItem(
                    kind="conversation",
                    id=conv_id,
                    skill=skill_of(conv),
                    urgent=conv.get("handoff_urgent") == "1",
                    since_ms=int(conv.get("handoff_ms") or now_ms()),
                    channel=conv.get("channel", ""),
                    reason=conv.get("handoff_reason", ""),
                    summary=conv.get("handoff_summary", ""),
                    member=conv.get("handoff_member") or conv.get("member_id", ""),
                )
            )
        for cb, due in await self.callbacks.due_items():
            shown = public(cb, due)
            items.append(
                QueueItem(
                    kind="callback",
                    id=cb["id"],
                    skill=skill_of_callback(cb),
                    urgent=False,
                    since_ms=int(due * 1000),
                    channel="phone",
                    reason="callback",
                    summary=f"Rappel {cb.get('slot_start', '')[11:16]}–{cb.get('slot_end', '')[11:16]}"
                    + (f" ({cb.get('attempts')} essai(s) sans réponse)" if cb.get("attempts") else ""),
                    member="",
                    callback=shown,
                )
            )
        if user is not None and not user.is_supervisor:
            items = [i for i in items if i.skill in user.skills]
        return sorted(items, key=lambda i: (not i.urgent, i.since_ms))

    async def mine(self, user: User) -> list[dict[str, Any]]:
        out = []
        for conv_id in sorted(await self.redis.smembers(keys.agent_conversations(user.login))):
            conv = await self.redis.hgetall(keys.conversation(conv_id))
            if conv.get("assigned_agent") == user.login and conv.get("status") == "assigned":
                out.append(_conv_public(conv))
        return sorted(out, key=lambda c: c.get("assigned_ms", 0))

    async def can_open(self, user: User, conv: dict[str, str]) -> bool:
        if not conv:
            return False
        if user.is_supervisor or conv.get("assigned_agent") == user.login:
            return True
        return conv.get("status") == "handoff" and skill_of(conv) in user.skills

    async def conversation(self, user: User, conv_id: str) -> dict[str, Any]:
        """Everything the agent sees: the conversation, the member's record, past conversations."""
        conv = await self.redis.hgetall(keys.conversation(conv_id))
        if not await self.can_open(user, conv):
            raise DeskError("Cette conversation n'est pas dans votre file.", 403)
        messages = await self.router.conversations.history(conv_id)
        notes = [json.loads(n) for n in await self.redis.lrange(keys.conversation_notes(conv_id), 0, -1)]
        member_id = conv.get("verified_member") or conv.get("handoff_member") or conv.get("member_id")
        if not member_id and conv.get("contact_id"):
            member_id = await self.redis.hget(keys.contact(conv["contact_id"]), "member_id")
        fiche = await self.member_record(str(member_id)) if member_id else None
        if fiche is not None:
            await audit(self.redis, str(member_id), conv_id, conv.get("channel", ""), "agent_opened_record", [],
                        agent=user.login)  # fmt: skip
        # Past conversations on every channel: all the contacts known to be this member.
        contacts = set(await self.redis.smembers(keys.member_contacts(str(member_id)))) if member_id else set()
        if conv.get("contact_id"):
            contacts.add(conv["contact_id"])
        past = await self.past_conversations(contacts, exclude=conv_id)
        speakers = {u.login: u.speaker for u in await Users(self.redis).all()}
        shown = _conv_public(conv)
        if conv.get("contact_id") and await self.redis.hget(keys.contact(conv["contact_id"]), "unproven"):
            # Mail whose sender the mutuelle's MX could not prove (DMARC failed): the address it shows may
            # be forged. Never linked to a member (gateway/contacts.py); the console says so.
            shown["sender_unproven"] = True
        return {
            "conversation": shown,
            "messages": [_message_public(m, speakers) for m in messages],
            "notes": notes,
            "member": fiche,
            "past": past,
        }

    async def past_conversations(self, contacts: set[str], *, exclude: str) -> list[dict[str, Any]]:
        """The latest 20 conversations of these contacts, on every channel (newest first)."""
        others: list[tuple[str, float]] = []
        for contact in contacts:
            others += await self.redis.zrevrange(keys.contact_conversations(contact), 0, 20, withscores=True)
        past = []
        for other, _ in sorted(others, key=lambda o: -o[1])[:20]:
            if other != exclude:
                data = await self.redis.hgetall(keys.conversation(other))
                count = await self.redis.zcard(keys.conversation_log(other))
                past.append({**_conv_public(data), "messages": int(count)})
        return past

    async def member_record(self, member_id: str) -> dict[str, Any] | None:
        store = MemberStore(self.redis)
        member = await store.get(member_id)
        if member is None:
            return None
        record: dict[str, Any] = {"member": asdict(member)}
        for kind in ("claims", "complaints", "quotes", "card", "membership"):
            record[kind] = await store.records(member_id, kind)
        # Accounts the member chose to have recognised (a Telegram chat), which an agent may undo.
        record["linked_accounts"] = [
            {"contact": a["contact"], "channel": a.get("channel", ""), "linked_ms": a.get("linked_ms", 0)}
            for a in await links.links(self.redis, member_id)
        ]
        return record

    async def unlink_account(self, user: User, conv_id: str, contact: str) -> dict[str, Any]:
        """« Ne plus reconnaître ce compte », from the record beside a conversation the agent may open:
        the member's Telegram chat is a stranger's again (member number and code next time); audited."""
        conv = await self.redis.hgetall(keys.conversation(conv_id))
        if not await self.can_open(user, conv):
            raise DeskError("Cette conversation n'est pas dans votre file.", 403)
        member_id = conv.get("verified_member") or conv.get("handoff_member") or conv.get("member_id")
        if not member_id and conv.get("contact_id"):
            member_id = await self.redis.hget(keys.contact(conv["contact_id"]), "member_id")
        if not member_id or not await links.unlink(self.redis, str(member_id), contact, agent=user.login):
            raise DeskError("Ce compte n'est pas relié au dossier de cet adhérent.", 404)
        await self.notify(conv_id)
        return {
            "ok": True,
            "linked_accounts": (await self.member_record(str(member_id)) or {}).get("linked_accounts", []),
        }

    # Taking ------------------------------------------------------------------------------
    async def take(self, user: User, conv_id: str) -> dict[str, Any]:
        conv = await self.redis.hgetall(keys.conversation(conv_id))
        if conv.get("status") != "handoff":
            raise DeskError("Cette conversation n'attend plus de conseiller.")
        if not user.is_supervisor and skill_of(conv) not in user.skills:
            raise DeskError("Cette conversation relève d'une autre compétence.", 403)
        if await self.load(user) >= user.capacity:
            raise DeskError(f"Vous avez déjà {user.capacity} conversations en cours : terminez-en une d'abord.")
        if not await self.redis.zrem(keys.HANDOFF_QUEUE, conv_id):
            raise DeskError("Un autre conseiller vient de prendre cette conversation.")
        taken = now_ms()
        await self.redis.hset(
            keys.conversation(conv_id),
            mapping={"status": "assigned", "assigned_agent": user.login, "assigned_ms": str(taken)},
        )
        await self.redis.sadd(keys.agent_conversations(user.login), conv_id)
        waited = max(0, taken - int(conv.get("handoff_ms") or taken))
        day = keys.day_stats(paris_day(taken))
        await self.redis.hincrby(day, "picked", 1)
        if waited <= PICKUP_TARGET_S * 1000:
            await self.redis.hincrby(day, "picked_in_target", 1)
        await self.redis.lpush(keys.PICKUPS, str(waited))
        await self.redis.ltrim(keys.PICKUPS, 0, 49)
        gender = "votre conseiller" if not user.first_name else f"{user.first_name}, de votre mutuelle"
        if conv.get("channel") != "voice":  # on a call the agent introduces themselves on the phone
            await self._say(conv_id, conv, f"take.{taken}", f"Bonjour, je suis {gender}. Je prends connaissance de "
                            "votre demande et je vous réponds ici.", speaker=user.speaker)  # fmt: skip
        await self.notify(conv_id)
        return _conv_public(await self.redis.hgetall(keys.conversation(conv_id)))

    async def assign(self, supervisor: User, conv_id: str, login: str) -> dict[str, Any]:
        """A supervisor gives a waiting conversation to an agent (their skills and capacity apply)."""
        if not supervisor.is_supervisor:
            raise DeskError("Seul un superviseur attribue une conversation.", 403)
        agent = await Users(self.redis).get(login)
        if agent is None or agent.role == "communications":
            raise DeskError("Conseiller inconnu.", 404)
        return await self.take(agent, conv_id)

    async def load(self, user: User) -> int:
        """What the agent holds: conversations and callbacks, against their capacity."""
        return int(await self.redis.scard(keys.agent_conversations(user.login))) + int(
            await self.redis.scard(keys.agent_callbacks(user.login))
        )

    async def take_next(self, user: User) -> dict[str, Any]:
        """The first item of the agent's queue: a conversation, or a callback due (by slot)."""
        for item in await self.queue(user):
            try:
                if item.kind == "callback":
                    return await self.callbacks.take(user, item.id)
                return await self.take(user, item.id)
            except Refused as exc:
                if exc.status == 409 and "en cours" not in str(exc):
                    continue  # taken by someone else meanwhile: the next one
                raise
        raise DeskError("Rien n'attend dans votre file : ni conversation, ni rappel à faire.", 404)

    # Working a conversation -----------------------------------------------------------------
    async def _held(self, user: User, conv_id: str) -> dict[str, str]:
        conv: dict[str, str] = await self.redis.hgetall(keys.conversation(conv_id))
        if not conv:
            raise DeskError("Conversation inconnue.", 404)
        if conv.get("assigned_agent") != user.login and not user.is_supervisor:
            raise DeskError("Cette conversation n'est pas la vôtre.", 403)
        if conv.get("status") != "assigned":
            raise DeskError("Cette conversation n'est pas en cours avec un conseiller.")
        return conv

    async def reply(self, user: User, conv_id: str, text: str, client_id: str) -> str:
        conv = await self._held(user, conv_id)
        if conv.get("channel") == "voice":
            raise DeskError("C'est un appel téléphonique : parlez à l'adhérent au téléphone, un message écrit ne lui "
                            "parviendrait pas. Notez l'échange dans les notes.")  # fmt: skip
        text = text.strip()
        if not text:
            raise DeskError("Le message est vide.", 400)
        if len(text) > 4000:
            raise DeskError("Le message dépasse 4 000 caractères.", 400)
        msg_id = await self._say(conv_id, conv, f"a.{client_id}", text, agent=user.login, speaker=user.speaker)
        await self.notify(conv_id)
        return msg_id

    async def _say(
        self, conv_id: str, conv: dict[str, str], suffix: str, text: str, *, agent: str = "", speaker: str = ""
    ) -> str:
        """Send ``text`` to the member on the conversation's channel, once per id. ``speaker`` names the
        agent who speaks (« Julie, conseillère »): channels that label messages (the web chat) show it."""
        channel = conv.get("channel", "")
        meta: dict[str, Any] = {}
        if channel == "callback":  # a callback request is answered by SMS when SMS is on
            channel = "sms" if self.sms_enabled else "callback"
        last = await self._last_inbound(conv_id)
        if last is not None and isinstance(last.meta.get("reply"), dict):
            meta["thread"] = last.meta["reply"]
        if agent:
            meta["agent"] = agent
        if speaker:
            meta["speaker"] = speaker
        msg = Message(
            id=f"{conv_id}.{suffix}",
            channel=channel,
            urn=conv.get("urn", ""),
            direction="out",
            text=text,
            meta=meta,
            contact_id=conv.get("contact_id") or None,
            conversation_id=conv_id,
        )
        await self.router.enqueue(msg)
        return msg.id

    async def _last_inbound(self, conv_id: str) -> Message | None:
        for msg_id in await self.redis.zrevrange(keys.conversation_log(conv_id), 0, 20):
            raw = await self.redis.hget(keys.message(conv_id, msg_id), "m")
            if raw:
                msg = Message.from_json(raw)
                if msg.direction == "in":
                    return msg
        return None

    async def note(self, user: User, conv_id: str, text: str) -> None:
        conv = await self.redis.hgetall(keys.conversation(conv_id))
        if not await self.can_open(user, conv):
            raise DeskError("Cette conversation n'est pas dans votre file.", 403)
        if not text.strip() or len(text) > 2000:
            raise DeskError("Une note fait de 1 à 2 000 caractères.", 400)
        await self._add_note(user, conv_id, text)

    async def _add_note(self, user: User, conv_id: str, text: str) -> None:
        note = {"by": user.login, "first_name": user.first_name, "text": text.strip(), "at_ms": now_ms()}
        await self.redis.rpush(keys.conversation_notes(conv_id), json.dumps(note, ensure_ascii=False))
        await self.notify(conv_id)

    async def transfer(self, user: User, conv_id: str, *, to_agent: str = "", to_skill: str = "") -> None:
        await self._held(user, conv_id)
        key = keys.conversation(conv_id)
        if to_agent:
            target = await Users(self.redis).get(to_agent)
            if target is None or target.role == "communications":
                raise DeskError("Conseiller inconnu.", 404)
            if await self.redis.scard(keys.agent_conversations(target.login)) >= target.capacity:
                raise DeskError(f"{target.first_name} n'a plus de place : transférez à une compétence.")
            await self.redis.srem(keys.agent_conversations(user.login), conv_id)
            await self.redis.sadd(keys.agent_conversations(target.login), conv_id)
            await self.redis.hset(key, mapping={"assigned_agent": target.login, "assigned_ms": str(now_ms())})
            await self._add_note(user, conv_id, f"Transférée à {target.first_name} ({target.login}).")
        elif to_skill:
            if to_skill not in SKILLS:
                raise DeskError("Compétence inconnue.", 400)
            await self.redis.srem(keys.agent_conversations(user.login), conv_id)
            await self.redis.hset(key, mapping={"status": "handoff", "skill": to_skill, "handoff_ms": str(now_ms())})
            await self.redis.hdel(key, "assigned_agent", "assigned_ms")
            await self.redis.zadd(keys.HANDOFF_QUEUE, {conv_id: now_ms()})
            await self._add_note(user, conv_id, f"Transférée à la file {SKILL_LABELS[to_skill]}.")
        else:
            raise DeskError("Indiquez un conseiller ou une compétence.", 400)
        await self.notify(conv_id)

    async def close(self, user: User, conv_id: str) -> None:
        """Close; the member gets the satisfaction survey on the same channel."""
        conv = await self._held(user, conv_id)
        closed = now_ms()
        key = keys.conversation(conv_id)
        # A phone call is over when it is closed: no written survey the member never asked to receive (and
        # which their next SMS would be taken as answering).
        survey = conv.get("channel") != "voice"
        await self.redis.hset(key, mapping={"status": "closed", "closed_ms": str(closed), "closed_by": user.login,
                                            **({"survey_step": "csat"} if survey else {})})  # fmt: skip
        await self.redis.srem(keys.agent_conversations(conv.get("assigned_agent", user.login)), conv_id)
        await self._release_open_pointer(conv_id, conv)
        await self.redis.hincrby(keys.day_stats(paris_day(closed)), "closed", 1)
        if conv.get("contact_id") and survey:
            await self.redis.set(keys.survey_pending(conv["contact_id"]), conv_id, ex=3 * 24 * 3600)
        await events.emit(self.redis, events.CONVERSATION_CLOSED, f"{conv_id} {conv.get('handoff_ms', '')}", {
            "conversation": conv_id, "channel": conv.get("channel", ""), "member": conv.get("handoff_member", ""),
            "agent": user.login, "closed_ms": closed})  # fmt: skip  # the survey's answers follow: survey.answered
        if survey:
            await self._say(conv_id, conv, "survey", SURVEY_CSAT)
        await self.notify(conv_id)

    async def _release_open_pointer(self, conv_id: str, conv: dict[str, str]) -> None:
        """The member's next message starts a new conversation."""
        if conv.get("contact_id") and conv.get("channel"):
            pointer = keys.open_conversation(conv["contact_id"], conv["channel"])
            if await self.redis.get(pointer) == conv_id:
                await self.redis.delete(pointer)

    async def give_back(self, user: User, conv_id: str) -> None:
        """Back to the bot, cleanly: Rasa's tracker restarts (no form or slot left over)."""
        conv = await self._held(user, conv_id)
        key = keys.conversation(conv_id)
        await self.redis.srem(keys.agent_conversations(conv.get("assigned_agent", user.login)), conv_id)
        await self.redis.hset(key, mapping={"status": "open", "returned_ms": str(now_ms())})
        await self.redis.hdel(key, "assigned_agent", "assigned_ms", "verify_stage", "verify_member",
                              "verify_failures", "verify_locked")  # fmt: skip
        if self.rasa_url:
            try:
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
                    async with session.post(
                        f"{self.rasa_url}/conversations/{conv_id}/tracker/events", json=[{"event": "restart"}]
                    ) as resp:
                        if resp.status >= 400:
                            log.error("bot restart refused", extra={"conversation": conv_id, "status": resp.status})
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.error("bot restart failed", extra={"conversation": conv_id, "error": type(exc).__name__})
        await self._say(conv_id, conv, f"bot.{now_ms()}", "Je vous redonne la main à l'assistant automatique : "
                        "écrivez-lui votre question quand vous voulez.")  # fmt: skip
        await self.notify(conv_id)

    # Callbacks -----------------------------------------------------------------------------
    async def callback_outcome(self, user: User, cb_id: str, outcome: str) -> dict[str, str]:
        """How a callback went (``agents/callbacks.py``)."""
        return await self.callbacks.outcome(user, cb_id, outcome)

    # Complaints ----------------------------------------------------------------------------
    async def complaints(self, user: User | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """Open complaints, overdue ones first (``overdue``, ``days_late``), then by due date; each shown to
        an agent is in its member's audit trail."""
        out = []
        today = dt.datetime.now(PARIS).date()
        store = MemberStore(self.redis)
        for entry, _ in await self.redis.zrange(keys.COMPLAINTS_DUE, 0, limit - 1, withscores=True):
            member, _, ref = entry.partition(" ")
            for record in await store.records(member, Complaint.RECORD):
                if record.get("id") == ref:
                    try:
                        late = (today - dt.date.fromisoformat(str(record.get("due_date")))).days
                    except ValueError:
                        late = 0
                    out.append({**record, "overdue": late > 0, "days_late": max(0, late)})
                    if user is not None:
                        await audit(
                            self.redis, member, "", "console", "agent_listed_complaint", [ref], agent=user.login
                        )
        # The set is already by due date; the sort says the rule (overdue first) where it is kept.
        return sorted(out, key=lambda c: (not c["overdue"], str(c.get("due_date") or "")))

    async def complaint_done(self, user: User, member: str, ref: str, status: str) -> dict[str, Any]:
        if status not in ("answered", "closed"):
            raise DeskError("Statut inconnu : answered ou closed.", 400)
        store = MemberStore(self.redis)
        found = [r for r in await store.records(member, Complaint.RECORD) if r.get("id") == ref]
        if not found:
            raise DeskError("Réclamation inconnue.", 404)
        today = dt.datetime.now(PARIS).date()
        record = {**found[0], "status": status}
        if status == "closed" and not record.get("closed_date"):
            record["closed_date"] = today.isoformat()
        if not record.get("answered_date"):
            record["answered_date"] = today.isoformat()
            due = dt.date.fromisoformat(str(record.get("due_date") or today.isoformat()))
            stats = keys.day_stats(today.isoformat())
            await self.redis.hincrby(stats, "complaints_answered", 1)
            if today <= due:
                await self.redis.hincrby(stats, "complaints_in_time", 1)
        complaint = Complaint(**record)
        async with self.redis.pipeline(transaction=False) as pipe:
            store.write_record(pipe, complaint)
            await pipe.execute()
        await audit(self.redis, member, "", "console", f"agent_marked_complaint_{status}", [ref], agent=user.login)
        await self.notify(ref)
        return record

    # Presence and the expected wait ------------------------------------------------------------
    async def seen(self, user: User) -> None:
        if user.role != "communications":
            await self.redis.zadd(keys.AGENTS_ONLINE, {user.login: now_ms()})
            await self.redis.sadd(keys.day_agents(paris_day()), user.login)

    async def online(self) -> list[str]:
        since = now_ms() - ONLINE_WINDOW_MS
        return list(await self.redis.zrangebyscore(keys.AGENTS_ONLINE, since, "+inf"))

    async def notify(self, ref: str) -> None:
        await self.redis.publish(keys.CONSOLE_NOTIFY, ref)


def _conv_public(conv: dict[str, str]) -> dict[str, Any]:
    shown = ("id", "channel", "status", "handoff_reason", "handoff_intent", "handoff_summary", "handoff_member",
             "verified_member", "assigned_agent", "skill", "closed_ms", "csat", "nps",
             "call_waiting")  # fmt: skip
    out: dict[str, Any] = {k: conv[k] for k in shown if conv.get(k)}
    for k in ("created_ms", "handoff_ms", "assigned_ms", "last_ms"):
        if conv.get(k):
            out[k] = int(conv[k])
    out["skill"] = skill_of(conv) if conv.get("status") in ("handoff", "assigned") else conv.get("skill", "")
    out["urgent"] = conv.get("handoff_urgent") == "1"
    return out


FAILED = ("failed", "undelivered")


def _message_public(item: dict[str, Any], speakers: dict[str, str] | None = None) -> dict[str, Any]:
    """A message as the console shows it; ``speaker`` names the agent who wrote it (empty: the member
    or the assistant), from the message itself or, for older messages, from the agent's login."""
    meta = item.get("meta") or {}
    delivery = item.get("delivery") or {}
    agent = str(meta.get("agent") or "")
    speaker = str(meta.get("speaker") or (speakers or {}).get(agent) or ("Conseiller" if agent else ""))
    return {
        "id": item.get("id"),
        "direction": item.get("direction"),
        "channel": item.get("channel"),
        "text": "Code de vérification envoyé (masqué)." if meta.get("otp") else item.get("text", ""),
        "created_ms": item.get("created_ms"),
        "agent": agent,
        "speaker": speaker,
        "status": delivery.get("status", ""),
        # Why a message did not go (the channel's reason, in French: a closed WhatsApp window...).
        **(
            {"error": str(delivery.get("error", ""))[:500]}
            if delivery.get("status") in FAILED and delivery.get("error")
            else {}
        ),
    }
