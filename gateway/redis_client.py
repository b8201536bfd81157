"""The product's Redis client: reconnects by itself, and packs commands in C.

redis-py's asyncio connections build the wire format of each command in Python, argument by
argument, which costs more than Redis takes to run a campaign batch's commands. hiredis (already
the reply parser) packs a command in one C call, as redis-py's synchronous client does when
hiredis is installed; the asyncio connections here do the same.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import hiredis
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
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


CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def is_cluster_url(url: str) -> bool:
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES


def connect(url: str, max_connections: int = 2000) -> Redis:
    """A client that reconnects by itself after Redis restarts.

    redis-py's default pool refuses a 101st concurrent command; a burst of webhooks
    needs more, and Redis serves thousands of clients, so the bound is set high.

    ``redis+cluster://[user:password@]host:port[,host:port...]`` (or ``rediss+cluster://``) gives
    a Redis Cluster client instead: the listed nodes are where it starts, it learns the others and
    follows failovers and slot moves by itself.
    """
    if is_cluster_url(url):
        return _connect_cluster(url, max_connections)
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


def _connect_cluster(url: str, max_connections: int) -> RedisCluster:
    parts = urlsplit(url)
    creds, _, hosts = parts.netloc.rpartition("@")
    seeds = [h.strip() for h in hosts.split(",") if h.strip()]
    if not seeds:
        raise ValueError("a cluster URL names at least one node: redis+cluster://host:port")
    scheme = CLUSTER_SCHEMES[parts.scheme.lower()]
    first = urlunsplit((scheme, f"{creds}@{seeds[0]}" if creds else seeds[0], parts.path, parts.query, ""))
    nodes = []
    for seed in seeds:
        host, _, port = seed.rpartition(":")
        nodes.append(ClusterNode(host.strip("[]") or seed, int(port) if host else 6379))
    client = RedisCluster.from_url(
        first,
        startup_nodes=nodes,
        max_connections=max_connections,  # per node
        decode_responses=True,
        socket_keepalive=True,
        # A master's failover takes the cluster's node timeout plus an election (a few seconds):
        # commands to its slots are retried, on the new topology, for longer than that.
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=30),
    )
    # The nodes it learns later are built from these settings (one dict shared with its nodes
    # manager); the seed nodes already exist. Both get the connections that pack in C.
    plain = client.connection_kwargs.get("connection_class", Connection)
    client.connection_kwargs["connection_class"] = _FAST.get(plain, plain)
    for node in client.startup_nodes:
        node.connection_class = _FAST.get(node.connection_class, node.connection_class)
    return client


# KEYS[1] = hash; ARGV = seconds to live (0: none), then field, value... (none: the hash is only deleted).
_REPLACE_HASH = """
redis.call('DEL', KEYS[1])
if #ARGV > 1 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 2))
  if tonumber(ARGV[1]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
end
return 1
"""


async def replace_hash(redis: Redis, key: str, mapping: dict[str, Any], ttl_s: int = 0) -> None:
    """Replace a hash's fields with ``mapping`` (optionally with a time to live) in one atomic step.

    A script rather than MULTI/EXEC: redis-py's cluster client runs each command queued in a
    transaction in a thread and event loop of its own, blocking the caller's loop meanwhile.
    """
    args: list[Any] = [ttl_s]
    for field, value in mapping.items():
        args += [field, value]
    await redis.eval(_REPLACE_HASH, 1, key, *args)
