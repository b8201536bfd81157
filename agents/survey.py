"""The satisfaction survey sent when an agent closes a conversation, answered on the same channel.

Two questions: satisfaction from 1 to 5 (CSAT), then recommendation from 0 to 10 (NPS: 9–10
promoters, 0–6 detractors). A member's next message that is a score goes to the closed
conversation; anything else ends the survey and is handled as usual. Answers are kept on the
conversation and counted per day (Europe/Paris). ``Survey`` is a detour the router is given
(``gateway/router.py``): the core asks it, knowing nothing of surveys.
"""

from __future__ import annotations

import re

from redis.asyncio import Redis

from gateway import events, keys
from gateway.conversations import paris_day
from gateway.envelope import Message

_SCORE = re.compile(r"^\s*(\d{1,2})\s*(?:/\s*(?:5|10))?\s*[.!]?\s*$")

NPS_QUESTION = "Merci ! Et de 0 à 10, recommanderiez-vous votre mutuelle à un proche ? Répondez par un nombre."
THANKS = "Merci pour vos réponses, elles nous aident à mieux vous servir. Bonne journée !"


def score(text: str) -> int | None:
    m = _SCORE.match(text or "")
    return int(m.group(1)) if m else None


class Survey:
    """The router's detour for survey answers: a score after a closed conversation goes back to it."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def conversation_for(self, contact_id: str, msg: Message) -> str | None:
        return await conversation_for(self.redis, contact_id, msg.id, msg.text)

    async def answer(self, conv_id: str, contact_id: str, msg: Message) -> list[str]:
        return await answer(self.redis, conv_id, contact_id, msg.text)


async def conversation_for(redis: Redis, contact_id: str, msg_id: str, text: str) -> str | None:
    """The closed conversation this message answers the survey of, if it does (stable on replay)."""
    route = f"{keys.survey_pending(contact_id)}:route:{msg_id}"
    routed = await redis.get(route)
    if routed:
        return str(routed)
    pending = await redis.get(keys.survey_pending(contact_id))
    if not pending:
        return None
    if score(text) is None:
        await redis.delete(keys.survey_pending(contact_id))  # they moved on: no more questions
        return None
    await redis.set(route, pending, ex=24 * 3600)
    return str(pending)


async def answer(redis: Redis, conv_id: str, contact_id: str, text: str) -> list[str]:
    value = score(text)
    conv = keys.conversation(conv_id)
    step = await redis.hget(conv, "survey_step")
    day = keys.day_stats(paris_day())
    if value is None or step not in ("csat", "nps"):
        return []
    if step == "csat":
        if not 1 <= value <= 5:
            return ["Répondez par un chiffre de 1 à 5, s'il vous plaît."]
        if await redis.hsetnx(conv, "csat", str(value)):
            await redis.hincrby(day, "csat_sum", value)
            await redis.hincrby(day, "csat_n", 1)
        await redis.hset(conv, "survey_step", "nps")
        return [NPS_QUESTION]
    if not 0 <= value <= 10:
        return ["Répondez par un nombre de 0 à 10, s'il vous plaît."]
    if await redis.hsetnx(conv, "nps", str(value)):
        group = "nps_promoters" if value >= 9 else "nps_detractors" if value <= 6 else "nps_passives"
        await redis.hincrby(day, group, 1)
    await redis.hset(conv, "survey_step", "done")
    await redis.delete(keys.survey_pending(contact_id))
    fields = await redis.hmget(conv, ["csat", "nps", "channel", "handoff_member", "closed_ms"])
    await events.emit(redis, events.SURVEY_ANSWERED, f"{conv_id} {fields[4] or ''}", {
        "conversation": conv_id, "csat": int(fields[0] or 0) or None, "nps": int(fields[1]) if fields[1] else None,
        "channel": fields[2] or "", "member": fields[3] or ""})  # fmt: skip
    return [THANKS]
