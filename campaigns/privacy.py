"""What the campaigns hold on one member, for the member's rights (``members/privacy.py``): each
campaign's record of its notice to the member, its plans for the member, and audience lists.
"""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

from campaigns.model import ALL, key


class CampaignNotices:
    """``members.privacy.Notices`` over the campaigns' keys."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def notices(self, number: str) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for cid in await self.redis.zrange(ALL, 0, -1):
            raw = await self.redis.hget(key(cid, "r"), number)
            if raw:
                found[str(cid)] = json.loads(raw)
        return found

    async def audience_lists(self, number: str) -> list[str]:
        return [
            str(cid)
            for cid in await self.redis.zrange(ALL, 0, -1)
            if await self.redis.sismember(key(cid, "list"), number)
        ]

    async def forget(self, number: str) -> int:
        removed = 0
        for cid in await self.redis.zrange(ALL, 0, -1):
            async with self.redis.pipeline(transaction=False) as pipe:
                for part in ("due", "inflight", "watch", "postal"):
                    pipe.zrem(key(cid, part), number)
                pipe.hdel(key(cid, "deadline"), number)
                pipe.srem(key(cid, "list"), number)
                results = await pipe.execute()
            removed += sum(int(r) for r in results)
        return removed
