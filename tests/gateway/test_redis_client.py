"""The product's Redis client packs commands with hiredis: every kind of argument arrives intact."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.exceptions import DataError

from gateway.redis_client import FastConnection


async def test_arguments_of_every_kind_arrive_intact(redis: Redis) -> None:
    assert redis.connection_pool.connection_class is FastConnection
    text = "Évolution de votre cotisation : 1\u202f234,50\xa0€ « ok » \U0001f600 \x00 fin"
    await redis.hset(
        "h", mapping={"text": text, "int": 42, "float": 1.5, "bytes": "é\x00".encode(), "big": "x" * 200_000}
    )
    got = await redis.hgetall("h")
    assert (got["text"], got["int"], got["float"], got["bytes"], len(got["big"])) == (
        text,
        "42",
        "1.5",
        "é\x00",
        200_000,
    )
    await redis.zadd("z", {"m": 1796288430.25})
    assert await redis.zscore("z", "m") == 1796288430.25
    # Commands of two words are split as the server expects.
    assert (await redis.config_get("appendonly"))["appendonly"] == "yes"
    assert await redis.execute_command("CLIENT SETNAME", "test-client") is True
    async with redis.pipeline(transaction=True) as pipe:  # MULTI/EXEC packs every command alike
        pipe.set("a", "é").incrbyfloat("n", 0.5).get("a")
        assert await pipe.execute() == [True, 0.5, "é"]


async def test_a_value_redis_cannot_store_is_refused_clearly(redis: Redis) -> None:
    with pytest.raises(DataError, match="NoneType"):
        await redis.set("k", None)  # type: ignore[arg-type]
    assert await redis.ping()  # the connection is still usable
