"""The product's cluster client packs commands in C too, on every node it learns, and every kind of
argument arrives intact on whichever master holds the key."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from gateway.redis_client import FastConnection


async def test_every_node_packs_in_c_and_values_arrive_intact(cluster_redis: Redis) -> None:
    assert isinstance(cluster_redis, RedisCluster)
    text = "Évolution de votre cotisation : 1\u202f234,50\xa0€ « ok » \U0001f600 \x00 fin"
    keys = [f"k{i}" for i in range(30)]  # spread over the three masters' slots
    for key in keys:
        await cluster_redis.hset(key, mapping={"text": text, "int": 42, "bytes": "é\x00".encode(), "big": "x" * 70_000})
    for key in keys:
        got = await cluster_redis.hgetall(key)
        assert (got["text"], got["int"], got["bytes"], len(got["big"])) == (text, "42", "é\x00", 70_000)
    async with cluster_redis.pipeline() as pipe:  # a cluster pipeline packs per node alike
        for key in keys:
            pipe.hget(key, "text")
        assert await pipe.execute() == [text] * len(keys)
    masters = cluster_redis.get_primaries()
    assert len(masters) == 3
    used = [c for node in cluster_redis.get_nodes() for c in node._connections]
    assert {type(c) for c in used} == {FastConnection}
    assert {n.name for n in masters} <= {n.name for n in cluster_redis.get_nodes() if n._connections}
