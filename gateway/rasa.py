"""The bot responder: asks the Rasa server what to answer.

Each inbound message is posted to Rasa's REST channel with the conversation id as sender
and the channel, contact and linked member as metadata. Rasa's answers are stored under
the inbound message before they are queued, so a replay after a crash re-queues the same
answers instead of asking Rasa twice. A conversation handed off to agents gets no bot answer.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
from redis.asyncio import Redis

from gateway import keys
from gateway.envelope import Message

log = logging.getLogger(__name__)

UNAVAILABLE_TEXT = (
    "Notre assistant est momentanément indisponible. Votre message est bien enregistré : "
    "un conseiller vous répondra dans les meilleurs délais."
)


def reply_texts(payload: Any) -> list[str]:
    """Texts from Rasa's REST answer; buttons fall back to a numbered list of their titles."""
    out: list[str] = []
    if not isinstance(payload, list):
        return out
    for item in payload:
        if not isinstance(item, dict):
            continue
        text = item.get("text")
        buttons = item.get("buttons")
        if not isinstance(buttons, list):
            buttons = []
        titles = [str(b.get("title")) for b in buttons if isinstance(b, dict) and b.get("title")]
        if titles:
            text = (str(text) + "\n" if text else "") + "\n".join(f"{i}. {t}" for i, t in enumerate(titles, 1))
        if text:
            out.append(str(text))
    return out


class RasaResponder:
    name = "rasa"

    def __init__(self, url: str, redis: Redis, *, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.redis = redis
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def respond(self, msg: Message, conversation: dict[str, str]) -> list[str]:
        if msg.automated or msg.kind in ("optout", "status"):
            return []
        if conversation.get("status") == "handoff":
            return []
        assert msg.conversation_id
        cache = keys.message(msg.conversation_id, msg.id)
        cached = await self.redis.hget(cache, "bot_replies")
        if cached is not None:
            return list(json.loads(cached))
        contact = await self.redis.hgetall(keys.contact(msg.contact_id)) if msg.contact_id else {}
        body = {
            "sender": msg.conversation_id,
            "message": msg.text,
            "metadata": {
                "channel": msg.channel,
                "urn": msg.urn,
                "contact_id": msg.contact_id,
                "member_id": contact.get("member_id"),
                "kind": msg.kind,
                "msg_id": msg.id,
            },
        }
        try:
            async with self._client().post(f"{self.url}/webhooks/rest/webhook", json=body) as resp:
                payload = await resp.json(content_type=None) if resp.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.error("bot unavailable", extra={**msg.log_fields(), "error": type(exc).__name__})
            payload = None
        # Without the bot the member still gets an answer saying the message is kept for an agent.
        texts = reply_texts(payload) if payload is not None else [UNAVAILABLE_TEXT]
        await self.redis.hset(cache, "bot_replies", json.dumps(texts, ensure_ascii=False))
        return texts
