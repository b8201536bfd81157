"""API keys of the back-office systems that call the records API (``run.py apikey …``).

A key is shown once, when it is created; Redis keeps only its SHA-256 digest (the key is 256 random
bits, so a plain digest cannot be brute-forced), with the key's name, scope (``read`` or ``write``)
and dates. Revoking keeps the record, marked, so a revoked key is told apart from an unknown one.
One name has one current key: creating a name whose key is still active is refused, and a revoked
name may be given a new key.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from gateway import keys

SCOPES = ("read", "write")
TOKEN_PREFIX = "mgw_"  # noqa: S105  # a marker, not a secret
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,39}$")


class ApiKeyError(ValueError):
    """A refused command, with a French reason."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    scope: str
    created_ms: int
    revoked_ms: int  # 0: active

    @property
    def active(self) -> bool:
        return not self.revoked_ms

    def allows(self, scope: str) -> bool:
        """A write key may also read."""
        return self.scope == "write" or scope == "read"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _key(data: dict[str, Any]) -> ApiKey:
    return ApiKey(
        name=str(data.get("name", "")),
        scope=str(data.get("scope", "read")),
        created_ms=int(data.get("created_ms") or 0),
        revoked_ms=int(data.get("revoked_ms") or 0),
    )


class ApiKeys:
    def __init__(self, redis: Any) -> None:
        self.redis = redis

    async def create(self, name: str, scope: str) -> str:
        """A new key for ``name``: returned once, only its digest kept."""
        name = name.strip().lower()
        if not _NAME.match(name):
            raise ApiKeyError(f"nom invalide {name!r} (2 à 40 caractères : lettres minuscules, chiffres, . _ -)")
        if scope not in SCOPES:
            raise ApiKeyError(f"portée {scope!r} inconnue (read ou write)")
        current = await self.redis.hget(keys.API_KEYS, name)
        if current and (found := await self.redis.hgetall(keys.api_key(current))) and not _key(found).revoked_ms:
            raise ApiKeyError(f"la clé {name} existe déjà ; révoquez-la d'abord (run.py apikey revoke {name})")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        digest = token_digest(token)
        now = str(int(time.time() * 1000))
        await self.redis.hset(keys.api_key(digest), mapping={"name": name, "scope": scope, "created_ms": now,
                                                             "revoked_ms": "0"})  # fmt: skip
        await self.redis.hset(keys.API_KEYS, name, digest)
        return token

    async def revoke(self, name: str) -> bool:
        """Revoke ``name``'s key at once; False when there is no active key of that name."""
        digest = await self.redis.hget(keys.API_KEYS, name.strip().lower())
        if not digest or not await self.redis.exists(keys.api_key(digest)):
            return False
        if int(await self.redis.hget(keys.api_key(digest), "revoked_ms") or 0):
            return False
        await self.redis.hset(keys.api_key(digest), "revoked_ms", str(int(time.time() * 1000)))
        return True

    async def list(self) -> list[ApiKey]:
        out = []
        for _name, digest in sorted((await self.redis.hgetall(keys.API_KEYS)).items()):
            data = await self.redis.hgetall(keys.api_key(digest))
            if data:
                out.append(_key(data))
        return out

    async def find(self, token: str) -> ApiKey | None:
        """The key a request presents (revoked ones included), or None when unknown."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        data = await self.redis.hgetall(keys.api_key(token_digest(token)))
        return _key(data) if data else None
