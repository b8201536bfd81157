"""Short callback references a person can read over the phone: ``RAP-7K4Q`` (made by the callback
channel, looked up by the agents' desk: both reach the gateway).

Four characters from an alphabet without the ones people confuse when reading or typing (no
0/O, 1/I/L, 2/Z, 5/S, 8/B, U): 24⁴ = 331,776 references; ``normalise`` accepts lower case, spaces
and a missing ``RAP``. Each is claimed with ``SET NX`` on its own key (``keys.callback_ref``), so two requests
never share one; a collision draws again. A reference expires a while after the last slot it can
name, so the space is reused.

The long request id (``cb`` + 22 hex characters) stays the request's key and keeps working wherever
a request is looked up: ``resolve`` takes either.
"""

from __future__ import annotations

import re
import secrets

from redis.asyncio import Redis

from gateway import keys

ALPHABET = "34679ACDEFGHJKMNPQRTVWXY"
PREFIX = "RAP-"
LENGTH = 4
TTL_S = 120 * 24 * 3600  # 30 days ahead at most, 3 tries, then some weeks for the member to quote it
MAX_DRAWS = 20
_LONG_ID = re.compile(r"^cb[0-9a-f]{22}$")


class NoReferenceLeft(RuntimeError):
    """Every draw collided (the space is nearly full): never expected, but never a loop."""


def draw() -> str:
    return PREFIX + "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def normalise(text: str) -> str | None:
    """What a person typed or said (« rap 7k4q », « 7K4Q ») as a reference, or None."""
    compact = re.sub(r"[\s\-_.]", "", text.upper())
    compact = compact.removeprefix("RAP")
    if len(compact) == LENGTH and all(c in ALPHABET for c in compact):
        return PREFIX + compact
    return None


async def claim(redis: Redis, request_id: str) -> str:
    """A new reference pointing at ``request_id``, unique among live references."""
    for _ in range(MAX_DRAWS):
        reference = draw()
        if await redis.set(keys.callback_ref(reference), request_id, nx=True, ex=TTL_S):
            return reference
    raise NoReferenceLeft(request_id)


async def release(redis: Redis, reference: str, request_id: str) -> None:
    """Give back a reference claimed for ``request_id`` (it turned out to exist already)."""
    if await redis.get(keys.callback_ref(reference)) == request_id:
        await redis.delete(keys.callback_ref(reference))


async def resolve(redis: Redis, text: str) -> str | None:
    """The request id for a short reference or a long id, or None."""
    text = text.strip()
    if _LONG_ID.match(text):
        return text
    reference = normalise(text)
    if reference is None:
        return None
    found = await redis.get(keys.callback_ref(reference))
    return str(found) if found else None
