"""The bot responder: asks the Rasa server what to answer.

Each inbound message is posted to Rasa's REST channel with the conversation id as sender
and the channel, contact and linked member as metadata. Rasa's answers are stored under
the inbound message before they are queued, so a replay after a crash re-queues the same
answers instead of asking Rasa twice. A conversation handed off to agents gets no bot answer.

The bot's actions never send anything themselves: when a member must prove who they are with a
one-time code, the answer carries ``{"otp": {"member": ..., "action": "send" | "resend" | "alert"}}``
and the responder asks its ``one_time_code`` hook (``members/codes.py``: drawn, limited, kept as a
keyed digest, addressed to the member's registered phone or e-mail) what the asker is told, in the
place of the request, and what goes elsewhere. What goes elsewhere (the code) is queued after the
answers to the sender and numbered apart from them (``gateway/router.py``), so the sender's replies
are the same, ids included, whether or not a code left. The ``code_metadata`` hook gives the bot,
with each message, the keyed digests of the codes it may hold (the key never leaves the gateway).
When the bot has just handed the conversation to agents, its ``handoff_note`` hook adds what the
member is told about the wait (``agents/waiting.py``). Its ``bot_message`` hook routes a few words
without the bot's language model (« DETAIL »: ``members/detail_word.py``). Its ``word_answer`` hook may answer a message by its
words before the bot reads it (``members/links.py``: the answer to « recognise this Telegram account? »
and « oubliez ce compte »); None lets the bot answer. The hooks are given by the composition root
(``server/product.py``); the core knows neither room.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from redis.asyncio import Redis

from gateway import keys
from gateway.envelope import Message
from gateway.responders import Reply, fixed_answer

log = logging.getLogger(__name__)

UNAVAILABLE_TEXT = (
    "Notre assistant est momentanément indisponible. Votre message est bien enregistré : "
    "un conseiller vous répondra dans les meilleurs délais."
)


@dataclass(frozen=True, slots=True)
class CodeRequest:
    """The bot asks for a one-time code (``send``; ``send_known`` when the sender's address is the
    member's, asked a code instead of the birth date: told where it went), for it again (``resend``:
    « je n'ai pas reçu le code »), or that the member be told their day's wrong codes are spent (``alert``)."""

    conversation: str
    member: str
    source: str  # who asks: the web-chat client's address (a keyed digest), else the sender's address
    action: str = "send"


@dataclass(frozen=True, slots=True)
class CodeOutcome:
    say: list[str]  # to the sender, in the place of the bot's request
    send: list[Reply] = field(default_factory=list)  # addressed elsewhere (the registered phone or e-mail)


CodeHook = Callable[[CodeRequest], Awaitable[CodeOutcome]]
# (conversation id, message text) -> what the bot is given about the codes the message may hold.
CodeMetadata = Callable[[str, str], dict[str, Any]]
# conversation id -> what a member just handed to agents is told about the wait.
HandoffNote = Callable[[str], Awaitable[str]]
# message text -> what the bot is given instead (e.g. an intent message « /give_identity ») and metadata to
# add, or None: words the bot routes without its language model (« DETAIL »: members/detail_word.py).
BotMessage = Callable[[str], tuple[str, dict[str, Any]] | None]
# (message, conversation hash) -> the answer to a message read by its words before the bot, or None.
WordAnswer = Callable[[Message, dict[str, str]], Awaitable[list[str] | None]]


def servers_for(conv_id: str, urls: list[str]) -> list[str]:
    """The Rasa servers in the order a conversation tries them (rendezvous hashing): a conversation stays
    on one server while it is up, and only the conversations of a server that goes move elsewhere."""
    return sorted(urls, key=lambda u: hashlib.blake2b(f"{u} {conv_id}".encode(), digest_size=8).digest(), reverse=True)


def _otp(item: Any) -> tuple[str, str] | None:
    """(member, action) of a one-time code request (custom payload ``{"otp": {"member": ...}}``)."""
    custom = item.get("custom") if isinstance(item, dict) else None
    otp = custom.get("otp") if isinstance(custom, dict) else None
    if isinstance(otp, dict) and isinstance(otp.get("member"), str):
        action = otp.get("action")
        return otp["member"], action if action in ("send", "send_known", "resend", "alert") else "send"
    return None


def otp_requests(payload: Any) -> list[str]:
    """Members the bot asks a one-time code for (custom payload ``{"otp": {"member": ...}}``)."""
    return [otp[0] for item in (payload if isinstance(payload, list) else ()) if (otp := _otp(item))]


def reply_texts(payload: Any) -> list[str]:
    """Texts from Rasa's REST answer; buttons fall back to a numbered list of their titles."""
    return [t for t in answer_items(payload) if isinstance(t, str)]


def answer_items(payload: Any) -> list[str | tuple[str, str]]:
    """Rasa's REST answer in order: texts (buttons fall back to a numbered list of their titles) and
    one-time code requests (member, action)."""
    out: list[str | tuple[str, str]] = []
    if not isinstance(payload, list):
        return out
    for item in payload:
        if not isinstance(item, dict):
            continue
        otp = _otp(item)
        if otp is not None:
            out.append(otp)
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
        self,
        url: str,
        redis: Redis,
        *,
        timeout_s: float = 30.0,
        one_time_code: CodeHook | None = None,
        code_metadata: CodeMetadata | None = None,
        handoff_note: HandoffNote | None = None,
        bot_message: BotMessage | None = None,
        word_answer: WordAnswer | None = None,
    ) -> None:
        # One or more Rasa servers (comma-separated) sharing their tracker and lock stores in Redis.
        self.urls = [u.strip().rstrip("/") for u in url.split(",") if u.strip()]
        self.url = self.urls[0] if self.urls else ""
        self.redis = redis
        self.one_time_code = one_time_code
        self.code_metadata = code_metadata
        self.handoff_note = handoff_note
        self.bot_message = bot_message
        self.word_answer = word_answer
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
        worded = await self.word_answer(msg, conversation) if self.word_answer is not None else None
        if worded is not None:
            said = [Reply(t) for t in worded]
            await self.redis.hset(cache, "bot_replies", json.dumps([r.to_dict() for r in said], ensure_ascii=False))
            return said
        contact = await self.redis.hgetall(keys.contact(msg.contact_id)) if msg.contact_id else {}
        body: dict[str, Any] = {
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
        if self.code_metadata is not None:
            body["metadata"]["otp"] = self.code_metadata(msg.conversation_id, msg.text)
        routed = self.bot_message(msg.text) if self.bot_message is not None else None
        if routed is not None:
            body["message"] = routed[0]
            body["metadata"].update(routed[1])
        payload = await self._ask(msg, body)
        # Without the bot the member still gets an answer saying the message is kept for an agent.
        replies: list[Reply] = []
        elsewhere: list[Reply] = []  # one-time codes and notices to the registered address: last
        for item in answer_items(payload) if payload is not None else [UNAVAILABLE_TEXT]:
            if isinstance(item, str):
                replies.append(Reply(item))
            elif self.one_time_code is None:
                log.warning("no way to send a one-time code", extra={"conversation": msg.conversation_id})
            else:
                source = str(msg.meta.get("source") or msg.urn)
                outcome = await self.one_time_code(CodeRequest(msg.conversation_id, item[0], source, item[1]))
                replies += [Reply(t) for t in outcome.say]
                elsewhere += outcome.send
        if payload is not None and self.handoff_note is not None:
            if await self.redis.hget(keys.conversation(msg.conversation_id), "status") == "handoff":  # just now
                replies.append(Reply(await self.handoff_note(msg.conversation_id)))
        if replies and await self._verified(msg):  # what a reopened web chat must not show again
            replies = [Reply(r.text, r.channel, r.urn, {**r.meta, "private": True}) for r in replies]
        replies += elsewhere
        await self.redis.hset(cache, "bot_replies", json.dumps([r.to_dict() for r in replies], ensure_ascii=False))
        return replies

    async def _verified(self, msg: Message) -> bool:
        """The sender was verified in this conversation (now or earlier): the answers may hold the
        member's data, and are marked so (a reopened web chat masks them)."""
        assert msg.conversation_id
        member, until, contact = await self.redis.hmget(
            keys.conversation(msg.conversation_id), ["verified_member", "verified_until_ms", "verified_contact"]
        )
        return bool(member) and str(until or "").isdigit() and contact == msg.contact_id

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
