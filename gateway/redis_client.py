"""The product's Redis client: reconnects by itself, and packs commands in C.

redis-py's asyncio connections build the wire format of each command in Python, argument by
argument, which costs more than Redis takes to run a campaign batch's commands. hiredis (already
the reply parser) packs a command in one C call, as redis-py's synchronous client does when
hiredis is installed; the asyncio connections here do the same.
"""

from __future__ import annotations

from typing import Any

import hiredis
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection, Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


class _HiredisPacking(AbstractConnection):  # type: ignore[misc]
    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        if isinstance(first, str) and " " in first:  # "CONFIG SET": the server wants two words
            args = (*first.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:  # None, bool, other types: redis-py's own packer says what is wrong
            packed: list[bytes] = super().pack_command(*args)
            return packed


class FastConnection(_HiredisPacking, Connection):  # type: ignore[misc]
    pass


class FastUnixConnection(_HiredisPacking, UnixDomainSocketConnection):  # type: ignore[misc]
    pass


class FastSSLConnection(_HiredisPacking, SSLConnection):  # type: ignore[misc]
    pass


_FAST: dict[type[Any], type[Any]] = {
    Connection: FastConnection,
    UnixDomainSocketConnection: FastUnixConnection,
    SSLConnection: FastSSLConnection,
}


def connect(url: str, max_connections: int = 2000) -> Redis:
    """A client that reconnects by itself after Redis restarts.

    redis-py's default pool refuses a 101st concurrent command; a burst of webhooks
    needs more, and Redis serves thousands of clients, so the bound is set high.
    """
    pool = ConnectionPool.from_url(
        url,
        max_connections=max_connections,
        decode_responses=True,
        socket_keepalive=True,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=20),
        retry_on_error=[RedisConnectionError, RedisTimeoutError, ConnectionResetError],
    )
    pool.connection_class = _FAST.get(pool.connection_class, pool.connection_class)
    return Redis(connection_pool=pool)
