"""Declining non-mandatory information by e-mail: List-Unsubscribe links and one-click (RFC 8058).

An information notice carries ``List-Unsubscribe: <https://…/desabonnement/TOKEN>,
<mailto:desabonnement@DOMAIN?subject=TOKEN>`` and ``List-Unsubscribe-Post:
List-Unsubscribe=One-Click``. The token is the member number and an HMAC of it under the
product's secret, so a link cannot be forged for another member, and nothing is stored per
notice. Unsubscribing adds the member's current address to ``keys.info_opt_out("email")``:
information campaigns skip it; mandatory notices (benefit and contribution changes) still go,
as the mutuelle must send them. Whoever unsubscribes a member passes ``told``, which the product
uses to write each unsubscription to the member's audit trail (``members/audit.py``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Awaitable, Callable
from typing import Any

from gateway import keys

# Told of each new unsubscription: (member number, via).
Told = Callable[[str, str], Awaitable[None]]

LOCAL_PART = "desabonnement"
_TOKEN = re.compile(r"([A-Za-z0-9_-]{1,40})\.([A-Za-z0-9_-]{22})")


def _sign(secret: str, number: str) -> str:
    digest = hmac.new(secret.encode(), f"unsubscribe\n{number}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:22]


def token(secret: str, number: str) -> str:
    return f"{number}.{_sign(secret, number)}"


def member_of(secret: str, value: str) -> str | None:
    """The member number a token was made for, or None (compared in constant time)."""
    found = _TOKEN.search(value or "")
    if not found:
        return None
    number, signature = found.groups()
    return number if hmac.compare_digest(signature, _sign(secret, number)) else None


def headers(secret: str, public_url: str, domain: str, number: str) -> dict[str, str]:
    t = token(secret, number)
    return {
        "List-Unsubscribe": f"<{public_url}/desabonnement/{t}>, <mailto:{LOCAL_PART}@{domain}?subject={t}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


async def unsubscribe(redis: Any, number: str, via: str, told: Told | None = None) -> bool:
    """Stop non-mandatory information e-mails to the member's address; False if none is known."""
    address = await redis.hget(keys.member(number), "email")
    if not address:
        return False
    added = await redis.sadd(keys.info_opt_out("email"), f"mailto:{address}")
    if added and told is not None:
        await told(number, via)
    return True


async def unsubscribe_address(redis: Any, address: str, via: str, told: Told | None = None) -> bool:
    """The same for a sender who wrote to the unsubscribe address without a valid token."""
    number = await redis.get(keys.member_by_email(address.strip().lower()))
    if number:
        return await unsubscribe(redis, str(number), via, told)
    await redis.sadd(keys.info_opt_out("email"), f"mailto:{address.strip().lower()}")
    return True
