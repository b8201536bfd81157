"""The router: each inbound message goes to the responder of its conversation.

Handling is idempotent, keyed on the message id, because an entry is acknowledged only
after it is handled and a crash replays it: the contact and conversation resolve to the
same ids, the message is stored once, and replies carry ids derived from the inbound id
(``<id>.r<n>``) so the outbound stream accepts each reply once. A reply addressed elsewhere (a
one-time code to the member's registered phone or e-mail) is numbered apart (``<id>.x<n>``): the
sender's replies are numbered the same whether or not a code left, so their ids tell nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from redis.asyncio import Redis

from gateway import events, keys
from gateway.contacts import Contacts, member_key_for
from gateway.conversations import Conversations
from gateway.envelope import Message
from gateway.metrics import FLOODED, INBOUND_HANDLED, REPLIES_QUEUED
from gateway.ratelimit import RateLimiter
from gateway.responders import Reply, Responder
from gateway.streams import Streams

log = logging.getLogger(__name__)

# Outbound messages are de-duplicated on their id, which is derived from the inbound id.
OUT_DEDUP_PREFIX = "out:"


def reply_id(inbound_id: str, n: int) -> str:
    return f"{inbound_id}.r{n}"


def aside_id(inbound_id: str, n: int) -> str:
    """The id of the ``n``-th reply to ``inbound_id`` addressed elsewhere than to its sender."""
    return f"{inbound_id}.x{n}"


FLOOD_TEXT = (
    "Nous avons bien reçu vos messages. Vous nous en envoyez beaucoup en peu de temps : nous les lisons "
    "tous et vous répondrons dès que possible."
)
FLOOD_NOTICE_S = 15 * 60  # a flooding sender is told so at most once per quarter hour


UNPROVEN_SUMMARY = (
    "Courriel à l'adresse d'un adhérent, expéditeur non vérifié (DMARC en échec) : pas de réponse automatique."
)


class Detour(Protocol):
    """A conversation other than the usual one that a member's text message may belong to, and its
    answer there (the satisfaction survey of a closed conversation: ``agents/survey.py``). The
    composition root gives the router its detours; the core knows nothing of what they are."""

    async def conversation_for(self, contact_id: str, msg: Message) -> str | None:
        """The conversation ``msg`` goes to instead, or None (stable when the message is replayed)."""
        ...

    async def answer(self, conv_id: str, contact_id: str, msg: Message) -> list[str]:
        """The texts to answer ``msg`` with in that conversation."""
        ...


def joined(replies: list[Reply]) -> list[Reply]:
    """The replies going back to the sender as one (in order, blank lines between), where the first of
    them was; a reply addressed elsewhere (a one-time code to the registered phone) stays on its own."""
    plain = [r for r in replies if not r.urn and not r.channel]
    if len(plain) < 2:
        return replies
    one = Reply(
        "\n\n".join(r.text for r in plain), meta={"private": True} if any(r.meta.get("private") for r in plain) else {}
    )
    out: list[Reply] = []
    for reply in replies:
        if reply.urn or reply.channel:
            out.append(reply)
        elif reply is plain[0]:
            out.append(one)
    return out


class Router:
    def __init__(
        self,
        redis: Redis,
        streams: Streams,
        responder: Responder,
        contacts: Contacts,
        conversations: Conversations,
        *,
        flood: tuple[float, int] = (30 / 60, 20),
        detours: Sequence[Detour] = (),
    ) -> None:
        self.redis = redis
        self.flood_rate, self.flood_burst = flood
        self.limiter = RateLimiter(redis)
        self.streams = streams
        self.responder = responder
        self.contacts = contacts
        self.conversations = conversations
        self.detours = list(detours)
        # Channels whose replies to one message go as one (set by the gateway from its channels).
        self.joined_channels: frozenset[str] = frozenset()

    async def handle(self, msg: Message) -> None:
        # An unproven sender (e-mail failing DMARC) is never the member whose address it shows.
        contact_id = await self.contacts.resolve(msg.urn, msg.channel, proven=msg.sender_authentic is not False)
        if not msg.automated and await self.flooding(msg):
            await self._flooded(msg, contact_id)
            return
        detour, detoured = None, None
        if msg.kind == "text" and not msg.automated:
            for candidate in self.detours:
                detoured = await candidate.conversation_for(contact_id, msg)
                if detoured:
                    detour = candidate
                    break
        conv_id = detoured or await self.conversations.for_message(contact_id, msg)
        msg = msg.with_(contact_id=contact_id, conversation_id=conv_id)
        await self.conversations.append(msg)
        if msg.kind == "optout":
            await self._opted_out(msg)
        elif msg.kind == "callback_request":
            await self._callback_requested(msg)
        done_key = keys.handled(conv_id, msg.id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(done_key)
            pipe.hgetall(keys.conversation(conv_id))
            done, conversation = await pipe.execute()
        if done:
            return
        if await self._unproven_member_mail(msg, conversation):
            await self.conversations.hand_off_quietly(conv_id, reason="unproven_sender", summary=UNPROVEN_SUMMARY)
            conversation["status"] = "handoff"
        if conversation.get("status") in ("handoff", "assigned"):
            await self.redis.publish(keys.CONSOLE_NOTIFY, conv_id)  # the agent's console shows it live
        if detour is not None:
            replies = [Reply(t) for t in await detour.answer(conv_id, contact_id, msg)]
        else:
            replies = await self.responder.respond(msg, conversation)
        await self._answer(msg, replies)
        await self.redis.set(done_key, self.responder.name, ex=30 * 24 * 3600)
        INBOUND_HANDLED.labels(msg.channel).inc()
        log.info(
            "inbound handled", extra={**msg.log_fields(), "replies": len(replies), "responder": self.responder.name}
        )

    async def _opted_out(self, msg: Message) -> None:
        """A member's STOP (SMS, WhatsApp, Telegram) is told to the back office, once per message; an
        address that is no member's is not (the event names members, never addresses)."""
        scheme, _, value = msg.urn.partition(":")
        number = await self.redis.get(keys.member_by_phone(value)) if scheme in ("tel", "whatsapp") else None
        if number:
            await events.emit(self.redis, events.OPTED_OUT, f"{msg.channel}:{msg.id}", {
                "member": number, "channel": msg.channel, "scope": "all", "via": "stop"})  # fmt: skip

    async def _callback_requested(self, msg: Message) -> None:
        """A callback asked for (form or API), told to the back office once: its ids and slot, and the member
        when the number is a member's registered phone."""
        meta = msg.meta or {}
        scheme, _, phone = msg.urn.partition(":")
        number = await self.redis.get(keys.member_by_phone(phone)) if scheme == "tel" else None
        await events.emit(self.redis, events.CALLBACK_REQUESTED, str(meta.get("callback_id") or msg.id), {
            "callback": meta.get("callback_id", ""), "reference": meta.get("reference", ""),
            "slot_start": meta.get("slot_start", ""), "slot_end": meta.get("slot_end", ""), "member": number or ""})  # fmt: skip

    async def _unproven_member_mail(self, msg: Message, conversation: dict[str, str]) -> bool:
        """Mail that claims a member's registered address but failed DMARC at the MX (and is no machine
        mail or spam besides): it may be the member (a forwarding that broke DMARC) or a forger. Nobody
        answers it automatically; an agent sees it, flagged, in the queue. Unproven mail from addresses
        no member registered is only stored (spam with forged senders would fill the queue)."""
        if msg.sender_authentic is not False or conversation.get("status") in ("handoff", "assigned"):
            return False
        if not str(msg.meta.get("automated_reason") or "").startswith("unauthenticated:"):
            return False
        index = member_key_for(msg.urn)
        return index is not None and bool(await self.redis.exists(index))

    async def _flooded(self, msg: Message, contact_id: str) -> None:
        """A message from a sender writing faster than a person: stored in its conversation (an agent
        sees it all), but neither the bot nor the providers are fed a robot's pace; the sender is told
        once per quarter hour. Kept cheap: a flood must not slow anyone else down."""
        conv_id = await self.conversations.for_message(contact_id, msg)
        msg = msg.with_(contact_id=contact_id, conversation_id=conv_id)
        await self.conversations.append(msg)
        FLOODED.labels(msg.channel).inc()
        if await self.redis.set(keys.flood_told(msg.urn), "1", nx=True, ex=FLOOD_NOTICE_S):
            await self._answer(msg, [Reply(FLOOD_TEXT)])
            log.info("sender writing too fast, told to slow down", extra=msg.log_fields())

    async def _answer(self, msg: Message, replies: list[Reply]) -> None:
        """Queue the replies to ``msg`` (its contact and conversation known), in its e-mail thread if any."""
        assert msg.contact_id and msg.conversation_id
        # A channel may ask for replies on another channel (a callback request is confirmed by SMS).
        reply_channel = str(msg.meta.get("reply_channel") or msg.channel)
        thread = {"thread": msg.meta["reply"]} if isinstance(msg.meta.get("reply"), dict) else {}
        if reply_channel in self.joined_channels:
            replies = joined(replies)
        # The sender's replies first, then those addressed elsewhere, each numbered on its own.
        mine = [r for r in replies if not r.urn]
        numbered = [(reply_id(msg.id, n), r) for n, r in enumerate(mine, start=1)]
        numbered += [(aside_id(msg.id, n), r) for n, r in enumerate((r for r in replies if r.urn), start=1)]
        for out_id, reply in numbered:
            private = {"private": True} if reply.meta.get("private") else {}
            await self.enqueue(
                Message(
                    id=out_id,
                    channel=reply.channel or reply_channel,
                    urn=reply.urn or msg.urn,
                    direction="out",
                    text=reply.text,
                    meta=reply.meta if reply.urn else {**thread, **private},
                    contact_id=msg.contact_id,
                    conversation_id=msg.conversation_id,
                    in_reply_to=msg.id,
                )
            )

    async def flooding(self, msg: Message) -> bool:
        """More than a person writes: beyond ``flood_burst`` messages at once, or a steady
        ``flood_rate`` a second, from one address."""
        if self.flood_rate <= 0:
            return False
        return await self.limiter.acquire(f"flood:{msg.urn}", self.flood_rate, self.flood_burst) > 0

    async def enqueue_many(self, outs: list[Message]) -> int:
        """Queue many outbound messages (a campaign batch), each once (de-duplicated on its id), with one
        script per stream shard; returns how many were new. The stream entry is the only copy of the
        text: the dispatcher writes the delivery record (``keys.message``) when it handles the entry,
        and a million notices are not kept twice."""
        for out in outs:
            assert out.conversation_id
        # Their own stream ("bulk"): members' replies never wait behind a campaign (gateway/dispatcher.py).
        new = await self.streams.accept_many("bulk", [(out, OUT_DEDUP_PREFIX + out.id) for out in outs])
        REPLIES_QUEUED.labels("campaign").inc(new)
        return new

    async def enqueue(self, out: Message) -> bool:
        """Store an outbound message in its conversation and queue it for the dispatcher, once."""
        await self.conversations.append(out, status="queued")
        accepted = await self.streams.accept("out", out, OUT_DEDUP_PREFIX + out.id)
        if accepted.new:
            REPLIES_QUEUED.labels(out.channel).inc()
        return accepted.new
