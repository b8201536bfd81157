"""The dispatcher: sends outbound messages through the channel registry.

* Idempotent on the message id: a message already sent (or failed for good) is skipped
  when its stream entry is replayed after a crash.
* Provider limits are shared by all processes (``RateLimiter``); a short wait is taken
  in place, a long one reschedules the message.
* Retryable errors are retried with exponential backoff and full jitter (or the
  provider's Retry-After); the entry is acknowledged once the retry is scheduled in a
  sorted set, which a poller moves back into the stream when due. Permanent errors and
  exhausted retries are recorded on the message with the provider's reason.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping

from redis.asyncio import Redis
from redis.exceptions import RedisError

from channels.base import Channel, RateLimit
from gateway import keys
from gateway.conversations import Conversations
from gateway.envelope import (
    FINAL_STATES,
    AmbiguousSend,
    ContactOptedOut,
    Message,
    PermanentFailure,
    ProviderUnavailable,
    SendError,
    Throttled,
    now_ms,
)
from gateway.metrics import SEND_FAILED, SEND_RETRIED, SEND_SECONDS, SENT
from gateway.ratelimit import RateLimiter
from gateway.settings import Settings
from gateway.streams import Streams

log = logging.getLogger(__name__)

# Waits up to this long for a rate-limit slot in place; longer waits reschedule.
MAX_INLINE_WAIT_S = 2.0

# KEYS[1] = message hash. ARGV = now ms, the in-flight mark the handler saw ("" if none), the states in
# which nothing is sent any more (space-separated). Takes the send for this handler, atomically: two
# handlers of one message (an entry claimed back from a consumer stuck on a Redis reconnect) can both
# pass the first look, but only the one that still finds the mark it saw may send.
_TAKE = """
local status = redis.call('HGET', KEYS[1], 'status')
if status and string.find(' ' .. ARGV[3] .. ' ', ' ' .. status .. ' ', 1, true) then return {'done', 0} end
local mark = redis.call('HGET', KEYS[1], 'inflight_ms') or ''
if mark ~= ARGV[2] then return {'busy', 0} end
redis.call('HSET', KEYS[1], 'sending_ms', ARGV[1], 'inflight_ms', ARGV[1])
return {'mine', redis.call('HINCRBY', KEYS[1], 'attempts', 1)}
"""
DONE_STATES = frozenset({*FINAL_STATES, "sent", "unknown"})  # nothing is sent any more
_DONE_ARG = " ".join(sorted(DONE_STATES))

# KEYS[1] = retry zset, KEYS[2] = retry payload hash. ARGV = due ms, msg id, payload.
_SCHEDULE = """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
"""

# KEYS[1] = retry zset, KEYS[2] = retry payload hash, KEYS[3] = stream.
# ARGV = now ms, max items, maxlen. Moves due messages back into the stream.
_DUE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(ids) do
  local payload = redis.call('HGET', KEYS[2], id)
  if payload then
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'm', payload)
  end
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
end
return #ids
"""


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter."""
    return random.uniform(0, min(cap, base * (2 ** (attempt - 1))))


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        streams: Streams,
        conversations: Conversations,
        channels: Mapping[str, Channel],
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.streams = streams
        self.conversations = conversations
        self.channels = channels
        self.limiter = RateLimiter(redis)
        self._take = redis.register_script(_TAKE)
        self._schedule = redis.register_script(_SCHEDULE)
        self._due = redis.register_script(_DUE)

    async def handle(self, msg: Message) -> None:
        conv = msg.conversation_id
        if not conv:
            log.error("outbound message without conversation", extra=msg.log_fields())
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(keys.message(conv, msg.id), "status")
            pipe.sismember(keys.opt_out(msg.channel), msg.urn)
            pipe.hget(keys.message(conv, msg.id), "inflight_ms")
            # Information the member declined since it was queued (List-Unsubscribe) is not sent either.
            pipe.sismember(keys.info_opt_out(msg.channel), msg.urn if msg.meta.get("list_unsubscribe") else "")
            status, opted_out, inflight, declined = await pipe.execute()
            opted_out = opted_out or declined
        if status in DONE_STATES:
            return  # already done: a replay after a crash
        channel = self.channels.get(msg.channel)
        mark_seen = str(inflight or "")
        if inflight and channel is not None:
            age_s = (now_ms() - int(inflight)) / 1000
            if age_s < self.settings.send_timeout_s + 5:
                # Another handler may be sending it right now (this entry was claimed from a slow
                # consumer): look again once that send has surely ended, one way or the other.
                await self.schedule(msg, self.settings.send_timeout_s + 5 - age_s)
                return
            if getattr(channel, "ambiguous", "") == "at_most_once":
                if not await self._settle(channel, msg, int(inflight)):
                    return
                mark_seen = ""  # settled: never received, its mark cleared
        if channel is None:
            await self._fail(msg, "channel_disabled", f"le canal {msg.channel} n'est pas configuré")
            return
        if opted_out:
            await self._fail(msg, "opted_out", "le destinataire a demandé à ne plus recevoir de messages")
            return
        if not await self._wait_for_slot(channel, msg):
            return
        mkey = keys.message(conv, msg.id)
        taken, attempt = await self._take(keys=[mkey], args=[now_ms(), mark_seen, _DONE_ARG])
        attempt = int(attempt)
        if taken == "done":
            return
        if taken == "busy":  # another handler took it since we looked: look again once its send has ended
            await self.schedule(msg, self.settings.send_timeout_s + 5)
            return
        started = time.perf_counter()
        try:
            result = await asyncio.wait_for(channel.send(msg), timeout=self.settings.send_timeout_s)
        except ContactOptedOut as exc:
            await self.redis.hdel(mkey, "inflight_ms")
            await self._fail(msg, "opted_out", exc.reason, code=exc.code)
            return
        except AmbiguousSend as exc:  # it may have been sent
            if getattr(channel, "ambiguous", "") == "at_most_once":
                await self._settle_later(msg, exc.reason)
                return
            await self.redis.hdel(mkey, "inflight_ms")
            await self._retry_or_fail(msg, attempt, exc)
            return
        except SendError as exc:  # the provider answered: nothing was sent
            await self.redis.hdel(mkey, "inflight_ms")
            await self._retry_or_fail(msg, attempt, exc)
            return
        except TimeoutError:  # it may have been sent
            if getattr(channel, "ambiguous", "") == "at_most_once":
                await self._settle_later(msg, "le fournisseur n'a pas répondu à temps")
                return
            await self.redis.hdel(mkey, "inflight_ms")
            await self._retry_or_fail(msg, attempt, ProviderUnavailable("délai dépassé chez le fournisseur"))
            return
        except Exception as exc:
            log.exception("channel send crashed", extra=msg.log_fields())
            await self.redis.hdel(mkey, "inflight_ms")
            await self._retry_or_fail(msg, attempt, ProviderUnavailable(f"{type(exc).__name__}"))
            return
        SEND_SECONDS.labels(msg.channel).observe(time.perf_counter() - started)
        # "sent" is recorded before the in-flight mark is cleared: killed in between, the message
        # reads as sent (not sent again); the other way round it would read as never tried.
        await self.conversations.record_sent(
            msg.channel, conv, msg.id, result.status or "sent", result.external_id, result.meta or {}
        )
        SENT.labels(msg.channel).inc()
        log.debug("sent", extra={**msg.log_fields(), "attempt": attempt})

    async def _wait_for_slot(self, channel: Channel, msg: Message) -> bool:
        """Take a slot in every bucket; False if the message was rescheduled instead. A campaign notice
        also takes one in its own bucket at ``BULK_SHARE`` of the provider's rate, so however large the
        campaign, members' replies keep the rest of the rate (and all of it when no campaign runs)."""
        limits = channel.rate_limits(msg)
        share = self.settings.bulk_share
        if msg.meta.get("campaign") and limits and 0 < share < 1:
            provider = limits[0]
            limits = [RateLimit(f"{provider.bucket}:bulk", provider.per_second * share, provider.burst), *limits]
        for limit in limits:
            while True:
                wait = await self.limiter.acquire(limit.bucket, limit.per_second, limit.burst)
                if wait <= 0:
                    break
                if wait > MAX_INLINE_WAIT_S:
                    await self.schedule(msg, wait)
                    return False
                await asyncio.sleep(wait)
        return True

    async def _retry_or_fail(self, msg: Message, attempt: int, exc: SendError) -> None:
        assert msg.conversation_id
        mkey = keys.message(msg.conversation_id, msg.id)
        await self.redis.hset(mkey, "last_error", exc.reason[:500])
        if exc.retryable and attempt < self.settings.send_max_attempts:
            delay = backoff(attempt, self.settings.send_backoff_base_s, self.settings.send_backoff_max_s)
            if isinstance(exc, Throttled) and exc.retry_after:
                delay = max(delay, exc.retry_after)
            SEND_RETRIED.labels(msg.channel).inc()
            log.warning(
                "send failed, will retry",
                extra={**msg.log_fields(), "attempt": attempt, "delay_s": round(delay, 3), "error": exc.reason[:200]},
            )
            await self.schedule(msg, delay)
            return
        reason = "retries_exhausted" if exc.retryable else "permanent"
        if isinstance(exc, PermanentFailure | ContactOptedOut):
            reason = "permanent"
        await self._fail(msg, reason, exc.reason, code=exc.code)

    async def _settle_later(self, msg: Message, text: str) -> None:
        """Keep the in-flight mark and look again once the provider has surely finished: the next
        handling asks the provider whether the message arrived (``_settle``) before sending."""
        assert msg.conversation_id
        await self.redis.hset(keys.message(msg.conversation_id, msg.id), "last_error", text[:500])
        await self.schedule(msg, self.settings.send_timeout_s + 5)

    async def _settle(self, channel: Channel, msg: Message, since_ms: int) -> bool:
        """An interrupted at-most-once send: ask the provider. True if it must be sent (it never arrived)."""
        assert msg.conversation_id
        settle = getattr(channel, "settle", None)
        if settle is None:
            await self._ambiguous(msg, "un envoi précédent a été interrompu : il n'est pas répété")
            return False
        try:
            found = await settle(msg, since_ms)
        except SendError:
            await self._ambiguous(msg, "envoi interrompu et fournisseur injoignable pour vérifier : pas répété")
            return False
        mkey = keys.message(msg.conversation_id, msg.id)
        if found is None:  # the provider never got it: safe to send
            await self.redis.hdel(mkey, "inflight_ms")
            return True
        await self.conversations.set_status(msg.conversation_id, msg.id, found.status or "sent")
        if found.external_id:
            await self.conversations.remember_provider_id(msg.channel, found.external_id, msg.conversation_id, msg.id)
        await self.redis.hdel(mkey, "inflight_ms")
        SENT.labels(msg.channel).inc()
        return False

    async def _ambiguous(self, msg: Message, text: str) -> None:
        """At-most-once channel, outcome unknown: not sent again; the provider's callback will tell."""
        assert msg.conversation_id
        mkey = keys.message(msg.conversation_id, msg.id)
        await self.redis.hset(mkey, mapping={"last_error": text, "ambiguous_ms": now_ms()})
        await self.conversations.set_status(msg.conversation_id, msg.id, "unknown")
        await self.redis.hdel(mkey, "inflight_ms")
        SEND_FAILED.labels(msg.channel, "ambiguous").inc()
        log.warning("send outcome unknown, not repeated", extra=msg.log_fields())

    async def _fail(self, msg: Message, reason: str, text: str, *, code: str | None = None) -> None:
        assert msg.conversation_id
        await self.redis.hset(keys.message(msg.conversation_id, msg.id), "failure", reason)
        await self.conversations.set_status(
            msg.conversation_id, msg.id, "failed", error_code=code or reason, error=text
        )
        SEND_FAILED.labels(msg.channel, reason).inc()
        log.warning("send failed for good", extra={**msg.log_fields(), "reason": reason})

    async def schedule(self, msg: Message, delay_s: float) -> None:
        shard = self.streams.shard(msg.urn)
        due = now_ms() + int(delay_s * 1000)
        assert msg.conversation_id
        await self.redis.hset(keys.message(msg.conversation_id, msg.id), "next_attempt_ms", due)
        await self._schedule(keys=[keys.retry(shard), keys.retry_payload(shard)], args=[due, msg.id, msg.to_json()])

    async def release_due(self) -> int:
        """Move due retries back into their streams; returns how many moved."""
        moved = 0
        for shard in range(self.streams.shards):
            moved += int(
                await self._due(
                    keys=[keys.retry(shard), keys.retry_payload(shard), keys.stream("out", shard)],
                    args=[now_ms(), 200, self.streams.maxlen],
                )
            )
        return moved

    async def run_retry_poller(self, stop: asyncio.Event, interval: float = 0.2) -> None:
        while not stop.is_set():
            try:
                await self.release_due()
            except (RedisError, OSError) as exc:
                log.warning("retry poller: redis unavailable", extra={"error": str(exc)})
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                pass
