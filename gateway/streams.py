"""Durable streams: accept once, read through consumer groups, acknowledge after handling.

* ``accept`` writes a message to a stream only if its de-duplication id is new, in one
  Lua script (marker and stream share a hash tag), and returns the entry id either way.
* ``Consumer`` reads a group: its own pending entries first (a restart), then new ones;
  entries left pending by a dead consumer are claimed back with XAUTOCLAIM. An entry is
  acknowledged only once its handler returned. A handler that keeps failing sends the
  entry, after ``max_attempts``, to a dead-letter stream so it blocks nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway import keys
from gateway.envelope import Message

log = logging.getLogger(__name__)

# KEYS[1] = seen marker, KEYS[2] = stream. ARGV = ttl, maxlen, payload, message id.
# Returns {"<entry id> <message id>" of the first delivery, 1 if new else 0}.
_ACCEPT = """
local prev = redis.call('GET', KEYS[1])
if prev then return {prev, 0} end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'm', ARGV[3])
local ref = id .. ' ' .. ARGV[4]
redis.call('SET', KEYS[1], ref, 'EX', ARGV[1])
return {ref, 1}
"""

# The same for a batch bound for one shard. KEYS[1] = stream, KEYS[2..n+1] = seen markers.
# ARGV = ttl, maxlen, then payload and message id of each. Returns 1 (new) or 0 per message.
# The marker holds " <message id>" (no entry id: nobody asks a batch for it), set first with NX
# so a message already seen costs one command; the script runs whole or not at all.
_ACCEPT_MANY = """
local out = {}
for i = 2, #KEYS do
  if redis.call('SET', KEYS[i], ' ' .. ARGV[2 * i], 'NX', 'EX', ARGV[1]) then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'm', ARGV[2 * i - 1])
    out[i - 1] = 1
  else
    out[i - 1] = 0
  end
end
return out
"""

# KEYS[1] = stream, KEYS[2] = dead stream, KEYS[3] = attempts hash.
# ARGV = group, entry id, payload, error text.
_BURY = """
redis.call('XADD', KEYS[2], '*', 'm', ARGV[3], 'error', ARGV[4], 'entry', ARGV[2])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
return 1
"""


@dataclass(frozen=True, slots=True)
class Accepted:
    entry_id: str
    msg_id: str  # the id of the message first accepted under this de-duplication id
    new: bool


class Streams:
    def __init__(self, redis: Redis, *, shards: int, maxlen: int, dedup_ttl_s: int, wait_replica_ms: int = 0) -> None:
        self.redis = redis
        self.wait_replica_ms = wait_replica_ms
        self.cluster = isinstance(redis, RedisCluster)
        self.shards = shards
        self.maxlen = maxlen
        self.dedup_ttl_s = dedup_ttl_s
        self._accept = redis.register_script(_ACCEPT)
        self._accept_many = redis.register_script(_ACCEPT_MANY)
        self._bury = redis.register_script(_BURY)

    def shard(self, urn: str) -> int:
        return keys.shard_of(urn, self.shards)

    async def accept(self, kind: str, msg: Message, dedup_id: str) -> Accepted:
        """Add ``msg`` to the ``kind`` stream unless ``dedup_id`` was seen already."""
        shard = self.shard(msg.urn)
        script_keys = [keys.seen(kind, shard, dedup_id), keys.stream(kind, shard)]
        args = [self.dedup_ttl_s, self.maxlen, msg.to_json(), msg.id]
        if kind == "in" and self.wait_replica_ms > 0:
            res = await self._accept_and_wait(script_keys, args)
        else:
            res = await self._accept(keys=script_keys, args=args)
        ref, new = res
        entry_id, _, msg_id = str(ref).partition(" ")
        return Accepted(entry_id=entry_id, msg_id=msg_id or msg.id, new=bool(int(new)))

    async def _accept_and_wait(self, script_keys: list[str], args: list[Any]) -> Any:
        """The accept script, then WAIT for one replica, on one connection (WAIT waits for the writes
        of its own connection): a pipeline, whose WAIT goes, on a cluster, to the stream's master."""
        target: dict[str, Any] = {}
        if self.cluster:
            target["target_nodes"] = self.redis.get_node_from_key(script_keys[1])
        async with self.redis.pipeline(transaction=False) as pipe:
            # EVAL, not EVALSHA: a replica just promoted may not have the script cached.
            pipe.execute_command("EVAL", _ACCEPT, len(script_keys), *script_keys, *args)
            pipe.execute_command("WAIT", 1, self.wait_replica_ms, **target)
            res, acked = await pipe.execute()
        if int(acked) < 1 and int(res[1]):
            log.warning("inbound accepted before any replica acknowledged it", extra={"wait_ms": self.wait_replica_ms})
        return res

    async def accept_many(self, kind: str, batch: list[tuple[Message, str]]) -> int:
        """``accept`` for a batch of (message, de-duplication id): one script per shard, whose keys
        share the shard's hash tag (cluster-safe); returns how many were new."""
        by_shard: dict[int, list[tuple[Message, str]]] = {}
        for msg, dedup_id in batch:
            by_shard.setdefault(self.shard(msg.urn), []).append((msg, dedup_id))
        new = 0
        for shard, items in by_shard.items():
            args: list[Any] = [self.dedup_ttl_s, self.maxlen]
            for msg, _ in items:
                args += (msg.to_json(), msg.id)
            flags = await self._accept_many(
                keys=[keys.stream(kind, shard), *(keys.seen(kind, shard, d) for _, d in items)], args=args
            )
            new += sum(int(f) for f in flags)
        return new

    async def ensure_groups(self, kind: str, group: str) -> None:
        for shard in range(self.shards):
            try:
                await self.redis.xgroup_create(keys.stream(kind, shard), group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def dead_letters(self, limit: int = 100) -> dict[str, Any]:
        """The latest entries sent to the dead-letter streams, newest first, with their error; what is
        shown of each message is what may be logged (ids, channel, masked address), never its text."""
        items: list[dict[str, Any]] = []
        total = 0
        for kind in ("in", "out", "bulk"):
            for shard in range(self.shards):
                key = keys.dead(kind, shard)
                total += int(await self.redis.xlen(key))
                for entry_id, fields in await self.redis.xrevrange(key, count=limit):
                    item: dict[str, Any] = {
                        "stream": kind,
                        "shard": shard,
                        "id": entry_id,
                        "at_ms": int(str(entry_id).split("-")[0]),
                        "error": str(fields.get("error", ""))[:500],
                        "entry": fields.get("entry", ""),
                    }
                    try:
                        item.update(Message.from_json(fields.get("m", "")).log_fields())
                    except (ValueError, TypeError, KeyError):
                        item["unreadable"] = True
                    items.append(item)
        items.sort(key=lambda i: i["at_ms"], reverse=True)
        return {"count": total, "items": items[:limit]}

    async def bury(self, kind: str, shard: int, group: str, entry_id: str, payload: str, error: str) -> None:
        await self._bury(
            keys=[keys.stream(kind, shard), keys.dead(kind, shard), keys.attempts(kind, shard)],
            args=[group, entry_id, payload, error[:500]],
        )


def consumer_name(explicit: str = "") -> str:
    return explicit or f"{socket.gethostname()}-{os.getpid()}"


Handler = Callable[[Message], Awaitable[None]]


class Consumer:
    """Reads one shard of a stream through a consumer group and runs a handler per entry.

    Entries of one shard are handled concurrently up to ``concurrency``, but never two of
    the same conversation address at once, so a conversation keeps its order.
    """

    def __init__(
        self,
        streams: Streams,
        kind: str,
        shard: int,
        group: str,
        name: str,
        handler: Handler,
        *,
        claim_idle_ms: int,
        max_attempts: int = 5,
        batch: int = 64,
        block_ms: int = 1000,
        concurrency: int = 32,
    ) -> None:
        self.streams = streams
        self.redis = streams.redis
        self.kind = kind
        self.shard = shard
        self.group = group
        self.name = name
        self.handler = handler
        self.claim_idle_ms = claim_idle_ms
        self.max_attempts = max_attempts
        self.batch = batch
        self.block_ms = block_ms
        self.key = keys.stream(kind, shard)
        self._sem = asyncio.Semaphore(concurrency)
        self._urn_locks = KeyedLocks()
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_hand: set[str] = set()  # entry ids being handled here: never claimed back by ourselves
        self.handled = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; then finish what was started (nothing is acked early)."""
        next_claim = 0.0
        own_pending = True  # after a restart, our own unacknowledged entries come first
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                if loop.time() >= next_claim:
                    await self._claim_stale()
                    next_claim = loop.time() + max(self.claim_idle_ms / 2000, 0.5)
                start = "0" if own_pending else ">"
                resp = await self.redis.xreadgroup(
                    self.group,
                    self.name,
                    {self.key: start},
                    count=self.batch,
                    block=None if own_pending else self.block_ms,
                )
                entries = resp[0][1] if resp else []
                if own_pending and not entries:
                    own_pending = False
                    continue
                for entry_id, fields in entries:
                    await self._spawn(entry_id, fields)
                if own_pending:
                    # Our pending entries are being handled; move on to new ones.
                    own_pending = False
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                log.warning("stream read failed, retrying", extra={"stream": self.key, "error": str(exc)})
                await _sleep_or_stop(stop, 1.0)
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    await self.streams.ensure_groups(self.kind, self.group)
                    continue
                raise
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _claim_stale(self) -> None:
        cursor = "0-0"
        while True:
            res = await self.redis.xautoclaim(
                self.key, self.group, self.name, self.claim_idle_ms, start_id=cursor, count=self.batch
            )
            cursor, claimed = res[0], res[1]
            for entry_id, fields in claimed:
                if entry_id in self._in_hand:
                    continue  # slow, not dead: still being handled by this consumer
                if fields:  # deleted entries come back empty
                    await self._spawn(entry_id, fields)
                else:
                    await self.redis.xack(self.key, self.group, entry_id)
            if not claimed or cursor in ("0-0", b"0-0"):
                return

    async def _spawn(self, entry_id: str, fields: dict[str, str]) -> None:
        if entry_id in self._in_hand:
            return
        self._in_hand.add(entry_id)
        await self._sem.acquire()
        task = asyncio.create_task(self._handle(entry_id, fields))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, entry_id: str, fields: dict[str, str]) -> None:
        payload = fields.get("m", "")
        try:
            try:
                msg = Message.from_json(payload)
            except (ValueError, TypeError, KeyError) as exc:
                await self.streams.bury(self.kind, self.shard, self.group, entry_id, payload, f"unreadable: {exc}")
                return
            try:
                async with self._urn_locks.hold(msg.urn):
                    await self.handler(msg)
                async with self.redis.pipeline(transaction=False) as pipe:  # one round trip for both
                    pipe.xack(self.key, self.group, entry_id)
                    pipe.hdel(keys.attempts(self.kind, self.shard), entry_id)
                    await pipe.execute()
                self.handled += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                tries = await self.redis.hincrby(keys.attempts(self.kind, self.shard), entry_id, 1)
                log.exception("handler failed", extra={**msg.log_fields(), "stream": self.key, "attempt": tries})
                if tries >= self.max_attempts:
                    await self.streams.bury(
                        self.kind, self.shard, self.group, entry_id, payload, f"{type(exc).__name__}: {exc}"
                    )
        finally:
            self._in_hand.discard(entry_id)
            self._sem.release()


class KeyedLocks:
    """One asyncio lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass
