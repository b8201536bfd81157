"""The bot responder: asks the Rasa server what to answer.

Each inbound message is posted to Rasa's REST channel with the conversation id as sender
and the channel, contact and linked member as metadata. Rasa's answers are stored under
the inbound message before they are queued, so a replay after a crash re-queues the same
answers instead of asking Rasa twice. A conversation handed off to agents gets no bot answer.

The bot's actions never send anything themselves: when a member must prove who they are with a
one-time code, the answer carries ``{"otp": {"member": ...}}`` and the gateway draws the code,
keeps only its digest (``bot/actions/state.py`` checks it) and sends it to the member's
registered phone (SMS) or e-mail, whichever channel is enabled.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import aiohttp
from redis.asyncio import Redis

from gateway import keys
from gateway.agents.waiting import expected_wait_text
from gateway.envelope import Message
from gateway.members import MemberStore
from gateway.otp import new_code, otp_digest
from gateway.ratelimit import RateLimiter
from gateway.redis_client import replace_hash
from gateway.responders import Reply, fixed_answer

log = logging.getLogger(__name__)

UNAVAILABLE_TEXT = (
    "Notre assistant est momentanément indisponible. Votre message est bien enregistré : "
    "un conseiller vous répondra dans les meilleurs délais."
)


OTP_TTL_S = 600
OTP_TEXT = "Votre code de vérification : {code}. Valable 10 minutes. Ne le communiquez à personne."


def servers_for(conv_id: str, urls: list[str]) -> list[str]:
    """The Rasa servers in the order a conversation tries them (rendezvous hashing): a conversation stays
    on one server while it is up, and only the conversations of a server that goes move elsewhere."""
    return sorted(urls, key=lambda u: hashlib.blake2b(f"{u} {conv_id}".encode(), digest_size=8).digest(), reverse=True)


def otp_requests(payload: Any) -> list[str]:
    """Members the bot asks a one-time code for (custom payload ``{"otp": {"member": ...}}``)."""
    out: list[str] = []
    for item in payload if isinstance(payload, list) else ():
        custom = item.get("custom") if isinstance(item, dict) else None
        otp = custom.get("otp") if isinstance(custom, dict) else None
        if isinstance(otp, dict) and isinstance(otp.get("member"), str):
            out.append(otp["member"])
    return out


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

    def __init__(
        self, url: str, redis: Redis, *, timeout_s: float = 30.0, otp_per_hour: float = 5.0, otp_burst: int = 3
    ) -> None:
        # One or more Rasa servers (comma-separated) sharing their tracker and lock stores in Redis.
        self.urls = [u.strip().rstrip("/") for u in url.split(",") if u.strip()]
        self.url = self.urls[0] if self.urls else ""
        self.redis = redis
        self.otp_rate = (otp_per_hour / 3600, otp_burst)
        self.code_channels: tuple[str, ...] = ("sms", "email")  # set by the gateway: enabled ones
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

    async def respond(self, msg: Message, conversation: dict[str, str]) -> list[Reply]:
        fixed = fixed_answer(msg)
        if fixed is not None:
            return [Reply(t) for t in fixed]
        if conversation.get("status") in ("handoff", "assigned", "closed"):
            return []  # with the agents (or closed): the bot stays silent
        assert msg.conversation_id
        cache = keys.message(msg.conversation_id, msg.id)
        cached = await self.redis.hget(cache, "bot_replies")
        if cached is not None:
            return [Reply.from_any(r) for r in json.loads(cached)]
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
        payload = await self._ask(msg, body)
        # Without the bot the member still gets an answer saying the message is kept for an agent.
        replies = [Reply(t) for t in reply_texts(payload)] if payload is not None else [Reply(UNAVAILABLE_TEXT)]
        if payload is not None and await self.redis.hget(keys.conversation(msg.conversation_id), "status") == "handoff":
            replies.append(Reply(await expected_wait_text(self.redis, msg.conversation_id)))  # just handed off
        for member in otp_requests(payload):
            code = await self.one_time_code(msg.conversation_id, member)
            if code is not None:
                replies.insert(0, code)
        await self.redis.hset(cache, "bot_replies", json.dumps([r.to_dict() for r in replies], ensure_ascii=False))
        return replies

    async def _ask(self, msg: Message, body: dict[str, Any]) -> Any:
        """The bot's answer, from the conversation's server or, if it is down, the next one in the
        conversation's order (its state is in Redis, so any server carries on). None if none answers."""
        assert msg.conversation_id
        servers = servers_for(msg.conversation_id, self.urls)
        for n, url in enumerate(servers):
            try:
                async with self._client().post(f"{url}/webhooks/rest/webhook", json=body) as resp:
                    if resp.status == 200:
                        return await resp.json(content_type=None)
                    error = f"http {resp.status}"
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                error = type(exc).__name__
            more = n + 1 < len(servers)
            log.log(
                logging.WARNING if more else logging.ERROR,
                "bot server unavailable" + (", trying the next" if more else ""),
                extra={**msg.log_fields(), "error": error, "server": n},
            )
        return None

    async def one_time_code(self, conv_id: str, member_id: str) -> Reply | None:
        """Draw a code for the conversation and address it to the member's registered phone or e-mail."""
        member = await MemberStore(self.redis).get(member_id)
        if member is None:
            return None
        # Anyone may claim to be a member and have a code sent to the member's phone: a few an hour per
        # member, so nobody can pester a member (or run up the SMS bill) through the bot. Past that, no
        # code goes; the conversation's answer is the same, the tries simply fail and hand off.
        if await RateLimiter(self.redis).acquire(f"otp:{member_id}", *self.otp_rate) > 0:
            log.warning("one-time code withheld: too many for this member", extra={"conversation": conv_id})
            return None
        for channel in self.code_channels:
            if channel == "sms" and member.phone:
                urn = f"tel:{member.phone}"
            elif channel == "email" and member.email:
                urn = f"mailto:{member.email}"
            else:
                continue
            code = new_code()
            key = keys.conversation_otp(conv_id)
            await replace_hash(
                self.redis, key, {"member": member_id, "digest": otp_digest(conv_id, code)}, ttl_s=OTP_TTL_S
            )
            meta = {"thread": {"subject": "Votre code de vérification"}, "otp": True}
            return Reply(OTP_TEXT.format(code=code), channel=channel, urn=urn, meta=meta)
        log.warning("no channel to send a one-time code", extra={"conversation": conv_id})
        return None
