"""The audit trail: who saw or changed which of a member's records, when and by which channel.

Every disclosure by the bot, every opening of a record by an agent, every unsubscription and every
erasure is an entry (record ids, never their content), in the member's own stream (a hash chain) and
in one stream for everyone.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import NoScriptError

from gateway import keys

AUDIT_MAXLEN = 1_000_000


AUDIT_FIELDS = ("member", "conversation", "channel", "what", "records", "at_ms", "agent")

# KEYS[1] = the member's audit stream. ARGV = the entry's values in AUDIT_FIELDS order. Each entry
# carries the hash of the one before it and its own (SHA-1 of the previous hash and its values), so
# an entry changed or removed outside the product breaks the chain (``verify_audit``). Atomic: two
# writers cannot fork the chain.
_AUDIT_APPEND = r"""
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local prev = ''
if #last > 0 then
  local f = last[1][2]
  for i = 1, #f, 2 do if f[i] == 'hash' then prev = f[i + 1] end end
end
local h = redis.sha1hex(prev .. '\n' .. table.concat(ARGV, '\31'))
return redis.call('XADD', KEYS[1], '*', 'member', ARGV[1], 'conversation', ARGV[2], 'channel', ARGV[3],
  'what', ARGV[4], 'records', ARGV[5], 'at_ms', ARGV[6], 'agent', ARGV[7], 'prev', prev, 'hash', h)
"""


async def audit(
    redis: Any, member: str, conv_id: str, channel: str, what: str, records: list[str], *, agent: str = ""
) -> None:
    """Who (member, conversation, agent if any), what (kind and record ids, never their content), when,
    channel: every disclosure by the bot and every opening of a record by an agent, per member (a hash
    chain) and for everyone. The product has no way to change or delete an entry, erasure included."""
    values = [member, conv_id, channel, what, json.dumps(records), str(int(time.time() * 1000)), agent]
    await redis.eval(_AUDIT_APPEND, 1, keys.member_audit(member), *values)
    entry = dict(zip(AUDIT_FIELDS, values, strict=True))
    await redis.xadd(keys.AUDIT_ALL, entry, maxlen=AUDIT_MAXLEN, approximate=True)


async def verify_audit(redis: Any, member: str) -> list[str]:
    """Entry ids of the member's audit trail whose chain is broken (empty: intact)."""
    broken: list[str] = []
    prev = ""
    for entry_id, entry in await redis.xrange(keys.member_audit(member)):
        body = prev + "\n" + "\x1f".join(str(entry.get(f, "")) for f in AUDIT_FIELDS)
        expected = hashlib.sha1(body.encode(), usedforsecurity=False).hexdigest()
        if entry.get("prev", "") != prev or entry.get("hash") != expected:
            broken.append(str(entry_id))
        prev = str(entry.get("hash", ""))
    return broken


def unsubscribed_audit(redis: Any) -> Callable[[str, str], Awaitable[None]]:
    """What writes a member's unsubscription from information e-mails to their audit trail."""

    async def told(number: str, via: str) -> None:
        await audit(redis, number, "", via, "unsubscribed_information_email", [])

    return told


_AUDIT_SHA = hashlib.sha1(_AUDIT_APPEND.encode(), usedforsecurity=False).hexdigest()


async def audit_many(redis: Any, entries: list[tuple[str, str, str, str, list[str], str]]) -> None:
    """``audit`` for many entries at once (member, conversation, channel, what, records, agent), pipelined:
    the records API writes thousands of records a request, each one audited."""
    if not entries:
        return
    now = str(int(time.time() * 1000))
    rows = [[m, conv, channel, what, json.dumps(records), now, agent] for m, conv, channel, what, records, agent in entries]
    for attempt in range(2):
        async with redis.pipeline(transaction=False) as pipe:
            for values in rows:
                pipe.evalsha(_AUDIT_SHA, 1, keys.member_audit(values[0]), *values)
            results = await pipe.execute(raise_on_error=False)
        failed = [values for values, r in zip(rows, results, strict=True) if isinstance(r, Exception)]
        if not failed:
            break
        if attempt == 1 or not all(isinstance(r, NoScriptError) for r in results if isinstance(r, Exception)):
            raise next(r for r in results if isinstance(r, Exception))
        await redis.script_load(_AUDIT_APPEND)
        rows = failed
    async with redis.pipeline(transaction=False) as pipe:
        for values in [[m, conv, channel, what, json.dumps(records), now, agent]
                       for m, conv, channel, what, records, agent in entries]:  # fmt: skip
            pipe.xadd(keys.AUDIT_ALL, dict(zip(AUDIT_FIELDS, values, strict=True)), maxlen=AUDIT_MAXLEN, approximate=True)
        await pipe.execute()
