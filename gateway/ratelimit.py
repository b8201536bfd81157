"""Rate limits shared by every process, with the generic cell rate algorithm (GCRA) in Redis.

One key per bucket holds the theoretical arrival time; a send is allowed when it would not
run more than ``burst`` emissions ahead of the steady rate. ``acquire`` answers how long to
wait instead of sleeping itself, so the caller decides (wait, or reschedule).
"""

from __future__ import annotations

from redis.asyncio import Redis

from gateway import keys

# KEYS[1] = bucket. ARGV = emission interval (us), burst, now is taken from Redis' clock.
# Returns 0 when allowed (and records it), else the wait in microseconds.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - interval * (burst - 1)
if now < allow_at then return allow_at - now end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return 0
"""


class RateLimiter:
    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(_GCRA)

    async def acquire(self, bucket: str, per_second: float, burst: int = 1) -> float:
        """Take one slot in ``bucket``; returns 0.0 when granted, else seconds to wait first."""
        if per_second <= 0:
            return 0.0
        interval_us = max(1, int(1_000_000 / per_second))
        wait_us = await self._script(keys=[keys.rate(bucket)], args=[interval_us, max(1, burst)])
        return int(wait_us) / 1_000_000
