"""Conversations and their full history.

A contact has at most one open conversation per channel; e-mail replies join the
conversation of the thread they answer (Message-ID / In-Reply-To / References). Every
message, in or out, is stored under its conversation (one hash tag per conversation) and
listed in time order. Appending is idempotent (keyed on the message id).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

from redis.asyncio import Redis

from gateway import keys
from gateway.envelope import Message, StatusUpdate, new_id, now_ms

PARIS = ZoneInfo("Europe/Paris")

# Progress order of delivery states: a callback may only move a message forward.
_RANK = {
    "queued": 0,
    "sending": 1,
    "unknown": 1.5,
    "sent": 2,
    "undelivered": 3,
    "failed": 3,
    "canceled": 3,
    "delivered": 4,
    "read": 5,
}
_RANK_JSON = json.dumps(_RANK)

# KEYS[1] = message hash. ARGV = status, rank table json, now ms, error code, error message.
_ADVANCE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local rank = cjson.decode(ARGV[2])
local cur = redis.call('HGET', KEYS[1], 'status') or 'queued'
if (rank[ARGV[1]] or 0) <= (rank[cur] or 0) then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], ARGV[1] .. '_ms', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'error_code', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[5]) end
return 1
"""


# KEYS = message hash, conversation log, conversation. ARGV = message id, created ms, the conversation's
# last_<direction>_ms field, message json, then the message's other fields (name, value...), written only
# by the first append. One script rather than MULTI/EXEC: atomic alike, one round trip, and redis-py's
# cluster client runs each command queued in a transaction in a thread of its own.
_APPEND = """
local new = redis.call('HSETNX', KEYS[1], 'm', ARGV[4])
redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1])
redis.call('HSET', KEYS[3], 'last_ms', ARGV[2], ARGV[3], ARGV[2])
if new == 1 and #ARGV > 4 then redis.call('HSET', KEYS[1], unpack(ARGV, 5)) end
return new
"""


class Conversations:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._advance = redis.register_script(_ADVANCE)
        self._append = redis.register_script(_APPEND)

    async def for_message(self, contact_id: str, msg: Message) -> str:
        """The conversation ``msg`` belongs to: its e-mail thread, else the open one on its channel."""
        for ref in msg.meta.get("thread_refs") or ():
            conv = await self.redis.get(keys.email_thread(str(ref)))
            # Only the thread's own contact joins it: anyone can quote a Message-ID, and another address
            # must not land in (and be answered within) a member's conversation.
            if conv and await self.redis.hget(keys.conversation(str(conv)), "contact_id") == contact_id:
                return str(conv)
        key = keys.open_conversation(contact_id, msg.channel)
        existing = await self.redis.get(key)
        if existing:
            return str(existing)
        candidate = new_id()
        won = await self.redis.set(key, candidate, nx=True)
        conv_id = candidate if won else str(await self.redis.get(key))
        if won:
            await self.redis.hset(
                keys.conversation(conv_id),
                mapping={
                    "id": conv_id,
                    "contact_id": contact_id,
                    "channel": msg.channel,
                    "urn": msg.urn,
                    "status": "open",
                    "created_ms": now_ms(),
                },
            )
            await self.redis.zadd(keys.contact_conversations(contact_id), {conv_id: now_ms()})
            # Counted per day for the supervisor's bot-containment figure.
            await self.redis.hincrby(keys.day_stats(paris_day()), "conversations", 1)
        return conv_id

    async def append(self, msg: Message, *, status: str | None = None) -> bool:
        """Store ``msg`` in its conversation once; returns False if it was already there."""
        assert msg.conversation_id, "append needs a conversation id"
        conv = msg.conversation_id
        mkey = keys.message(conv, msg.id)
        fields: dict[str, Any] = {"m": msg.to_json(), "created_ms": msg.created_ms}
        if status:
            fields["status"] = status
            fields[f"{status}_ms"] = now_ms()
        rest = [str(x) for k, v in fields.items() if k != "m" for x in (k, v)]
        last = f"last_{msg.direction}_ms"
        new = await self._append(
            keys=[mkey, keys.conversation_log(conv), keys.conversation(conv)],
            args=[msg.id, msg.created_ms, last, fields["m"], *rest],
        )
        # Conversations by last message, for the retention purge (members/privacy.py); campaign notices
        # (``c.`` conversations) are proofs, kept with their campaign.
        if new and not conv.startswith("c."):
            await self.redis.zadd(keys.RETENTION_INDEX, {conv: msg.created_ms}, gt=True)
        if msg.direction == "in" and msg.meta.get("message_id"):
            await self.redis.set(keys.email_thread(str(msg.meta["message_id"])), conv, nx=True)
        return bool(new)

    async def record(self, conv_id: str, msg_id: str) -> dict[str, str]:
        data: dict[str, str] = await self.redis.hgetall(keys.message(conv_id, msg_id))
        return data

    async def history(self, conv_id: str, limit: int = 200) -> list[dict[str, Any]]:
        """The conversation's messages in time order, each with its delivery fields."""
        ids = await self.redis.zrange(keys.conversation_log(conv_id), -limit, -1)
        out: list[dict[str, Any]] = []
        for msg_id in ids:
            rec = await self.record(conv_id, msg_id)
            if not rec.get("m"):
                continue
            item = json.loads(rec.pop("m"))
            item["delivery"] = rec
            out.append(item)
        return out

    async def get(self, conv_id: str) -> dict[str, str]:
        data: dict[str, str] = await self.redis.hgetall(keys.conversation(conv_id))
        return data

    async def hand_off_quietly(self, conv_id: str, *, reason: str, summary: str) -> None:
        """Put the conversation in the agents' queue without a word to the sender (the bot's handoff,
        bot/actions/state.py, also tells the member they wait); idempotent."""
        at = now_ms()
        await self.redis.hset(
            keys.conversation(conv_id),
            mapping={"status": "handoff", "handoff_reason": reason, "handoff_intent": "", "handoff_member": "",
                     "handoff_summary": summary[:1000], "handoff_urgent": "0", "handoff_ms": str(at)},
        )  # fmt: skip
        await self.redis.zadd(keys.HANDOFF_QUEUE, {conv_id: at}, nx=True)
        await self.redis.publish(keys.CONSOLE_NOTIFY, conv_id)

    async def set_status(
        self, conv_id: str, msg_id: str, status: str, *, error_code: str = "", error: str = ""
    ) -> bool:
        """Move an outbound message's delivery status forward (never back)."""
        res = await self._advance(
            keys=[keys.message(conv_id, msg_id)],
            args=[status, _RANK_JSON, now_ms(), error_code, error[:500]],
        )
        if int(res) == 1 and status in ("failed", "undelivered"):
            # An agent's console shows why a message did not go, as soon as it is known.
            await self.redis.publish(keys.CONSOLE_NOTIFY, conv_id)
        return int(res) == 1

    async def record_sent(
        self, channel: str, conv_id: str, msg_id: str, status: str, external_id: str | None, meta: dict[str, Any]
    ) -> None:
        """A send's outcome in two round trips: the status first, then the in-flight mark cleared (killed
        in between, the message reads as sent, never as untried), the provider's id both ways, and
        callbacks that raced ahead of the send's answer applied."""
        mkey = keys.message(conv_id, msg_id)
        fields = {f"send_{k}": str(v) for k, v in meta.items()}
        # The status first, on its own: a script inside a pipeline is not reloaded when Redis restarts
        # mid-way, and the pipeline's next commands would then clear the mark of a message not marked
        # sent (it was sent twice, in the chaos run that killed redis-server during a campaign).
        await self._advance(keys=[mkey], args=[status, _RANK_JSON, now_ms(), "", ""])
        # The provider's id is written before the in-flight mark is cleared: a record without the mark is whole.
        async with self.redis.pipeline(transaction=False) as pipe:
            if external_id:
                fields["external_id"] = external_id
                pipe.set(keys.provider_ref(channel, external_id), f"{conv_id} {msg_id}", ex=30 * 24 * 3600)
                pipe.lrange(_parked(channel, external_id), 0, -1)
            if fields:
                pipe.hset(mkey, mapping=fields)
            pipe.hdel(mkey, "inflight_ms")
            results = await pipe.execute()
        if external_id:
            await self._apply_parked(channel, external_id, conv_id, msg_id, results[1])

    async def remember_provider_id(self, channel: str, external_id: str, conv_id: str, msg_id: str) -> None:
        await self.redis.set(keys.provider_ref(channel, external_id), f"{conv_id} {msg_id}", ex=30 * 24 * 3600)
        await self.redis.hset(keys.message(conv_id, msg_id), "external_id", external_id)
        parked = await self.redis.lrange(_parked(channel, external_id), 0, -1)
        await self._apply_parked(channel, external_id, conv_id, msg_id, parked)

    async def _apply_parked(self, channel: str, external_id: str, conv_id: str, msg_id: str, parked: list[str]) -> None:
        """Callbacks that raced ahead of the send's answer were parked under the provider's id: apply them now."""
        for raw in parked:
            upd = json.loads(raw)
            await self.set_status(conv_id, msg_id, upd["status"], error_code=upd["code"], error=upd["error"])
        if parked:
            await self.redis.delete(_parked(channel, external_id))

    async def apply_status(self, update: StatusUpdate) -> str:
        """Apply a provider's status callback; callbacks may arrive twice or out of order. Returns
        "<conversation> <message>" when the status moved forward, else ""."""
        ref = await self.redis.get(keys.provider_ref(update.channel, update.external_id))
        if not ref and update.ref and " " in update.ref:
            # A send whose answer we never got (killed mid-request): the callback names our message.
            conv_id, _, msg_id = update.ref.partition(" ")
            if await self.redis.exists(keys.message(conv_id, msg_id)):
                await self.remember_provider_id(update.channel, update.external_id, conv_id, msg_id)
                ref = update.ref
        if not ref:
            key = _parked(update.channel, update.external_id)
            await self.redis.rpush(
                key,
                json.dumps(
                    {"status": update.status, "code": update.error_code or "", "error": update.error_message or ""}
                ),
            )
            await self.redis.expire(key, 3600)
            return ""
        conv_id, _, msg_id = str(ref).partition(" ")
        moved = await self.set_status(
            conv_id, msg_id, update.status, error_code=update.error_code or "", error=update.error_message or ""
        )
        return f"{conv_id} {msg_id}" if moved else ""


def paris_day(ms: int | None = None) -> str:
    """The Europe/Paris calendar day of ``ms`` (now by default): daily figures are counted per such day."""
    return dt.datetime.fromtimestamp((ms if ms is not None else now_ms()) / 1000, PARIS).date().isoformat()


def _parked(channel: str, external_id: str) -> str:
    return f"{keys.provider_ref(channel, external_id)}:parked"
