"""The mail-loop guard: how often one address writes to us, counted in Redis.

Auto-responders are recognised by their headers and wording (``parse.automated_reason``), but a
robot that marks nothing (a ticketing system, a badly written script) answers each of our
answers, and ours answers back. So each address gets at most ``per_10min`` automatic answers in
ten minutes and ``per_day`` in 24 hours, counted on the mails it sends us (not the ones we send):
a mail over either figure is stored for the agents as usual but marked automated, so nobody
answers it, and the exchange stops there. The address is answered again once it writes less
(the windows slide). Every process counts in the same sorted set, one key per address.

The figures (``EMAIL_ANSWERED_PER_10MIN=10``, ``EMAIL_ANSWERED_PER_DAY=30``; 0 turns a figure off):
a robot that answers at once gets ten answers, well under a minute, then nothing; a member in an
e-mail dialogue with the bot (verification takes two to four mails) stays far below, and a member
who writes more still reaches the agents, who see every mail.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from gateway import keys

TEN_MINUTES_MS = 10 * 60 * 1000
DAY_MS = 24 * 3600 * 1000

# KEYS[1] = the address's sorted set (member = the mail's id, score = arrival ms).
# ARGV = mail id, short window ms, long window ms, how many entries to keep.
# Returns {mails in the short window, mails in the long window}, this one included. A mail
# delivered twice (same id) keeps its first arrival and is counted once.
_COUNT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
redis.call('ZADD', KEYS[1], 'NX', now, ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[4]) + 1))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {redis.call('ZCOUNT', KEYS[1], now - tonumber(ARGV[2]), '+inf'), redis.call('ZCARD', KEYS[1])}
"""


@dataclass(frozen=True, slots=True)
class Pace:
    last_10min: int
    last_day: int
    over: bool


class LoopGuard:
    def __init__(self, redis: Redis, *, per_10min: int, per_day: int) -> None:
        self.per_10min = per_10min
        self.per_day = per_day
        self._script = redis.register_script(_COUNT)

    async def count(self, address: str, mail_id: str) -> Pace:
        """Record one mail from ``address``; ``over`` when it must not be answered automatically.
        A figure of 0 or less turns the guard off."""
        if self.per_10min <= 0 and self.per_day <= 0:
            return Pace(0, 0, False)
        keep = max(self.per_10min, self.per_day) + 1
        short, long = await self._script(keys=[keys.email_sender_pace(address)],
                                         args=[mail_id, TEN_MINUTES_MS, DAY_MS, keep])  # fmt: skip
        over = (0 < self.per_10min < int(short)) or (0 < self.per_day < int(long))
        return Pace(int(short), int(long), over)
