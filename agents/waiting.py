"""What a member waiting for an agent is told: an expected wait from recent pick-ups and agents online."""

from __future__ import annotations

import math

from redis.asyncio import Redis

from gateway import keys
from gateway.envelope import now_ms
from gateway.hours import DEFAULT_HOURS, OpeningHours

ONLINE_WINDOW_MS = 2 * 60 * 1000


async def expected_wait_text(redis: Redis, conv_id: str, hours: OpeningHours = DEFAULT_HOURS) -> str:
    """What a member waiting for an agent is told (from recent pick-ups and agents online); the
    hours are the product's one opening-hours setting (``Settings.opening_hours``)."""
    online = await redis.zcount(keys.AGENTS_ONLINE, now_ms() - ONLINE_WINDOW_MS, "+inf")
    if not online:
        return (
            "Aucun conseiller n'est disponible pour le moment : votre demande est gardée et un conseiller "
            f"vous répondra ici dès que possible (nous sommes là {hours.describe()})."
        )
    rank = await redis.zrank(keys.HANDOFF_QUEUE, conv_id)
    position = (int(rank) if rank is not None else 0) + 1
    recent = [int(w) for w in await redis.lrange(keys.PICKUPS, 0, 19)]
    typical_s = (sum(recent) / len(recent) / 1000) if recent else 60.0
    minutes = max(1, math.ceil(typical_s * position / int(online) / 60))
    return f"Temps d'attente estimé : environ {minutes} minute{'s' if minutes > 1 else ''}."
