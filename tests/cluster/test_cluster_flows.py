"""The product on a real Redis Cluster (3 masters, 3 replicas), started as a user starts it
(``run.py serve`` with ``REDIS_URL=redis+cluster://...``, ``STREAM_SHARDS=6``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
from redis.asyncio import Redis

from gateway import keys
from gateway.responders import ACK_TEXT
from tests.cluster.conftest import SHARDS
from tests.cluster.local_cluster import LocalCluster
from tests.e2e.product import Product
from tests.e2e.test_sms_e2e import post_sms
from tests.fakes.twilio import FakeTwilio


async def quiet(redis: Redis, timeout: float = 20.0) -> None:
    """Nothing pending, lagging or waiting for a retry on any shard."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        busy = 0
        for shard in range(SHARDS):
            for kind, group in (("in", "router"), ("out", "dispatcher")):
                stream = keys.stream(kind, shard)
                if await redis.exists(stream):
                    busy += (await redis.xpending(stream, group))["pending"]
                    busy += sum(int(g.get("lag") or 0) for g in await redis.xinfo_groups(stream))
            busy += await redis.zcard(keys.retry(shard))
        if busy == 0:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not quiet: {busy} entries pending, lagging or waiting")
        await asyncio.sleep(0.1)


async def test_sms_in_reply_out_once_with_streams_over_every_master(
    cluster: LocalCluster, cluster_redis: Redis, make_product: Callable[..., Product], fake_twilio: FakeTwilio
) -> None:
    product = make_product()
    await product.start()
    members = [f"+336399810{i:02d}" for i in range(24)]
    async with aiohttp.ClientSession() as session:
        first = await asyncio.gather(*(post_sms(session, product, m, "Bonjour") for m in members))
        assert all(status == 200 for status, _ in first)
        # Twilio retries each one: the same MessageSid again, answered 200 and not handled twice.
        again = await asyncio.gather(*(post_sms(session, product, m, "Bonjour", sid) for m, (_, sid) in zip(members, first)))
        assert all(status == 200 for status, _ in again)
    await fake_twilio.wait_for(len(members), timeout=30)
    await quiet(cluster_redis)
    assert sorted(m.to for m in fake_twilio.messages) == sorted(members)
    assert {m.body for m in fake_twilio.messages} == {ACK_TEXT}
    # The inbound shards are spread over the three masters.
    owners = {cluster_redis.get_node_from_key(keys.stream("in", s)).name for s in range(SHARDS)}
    assert len(owners) == 3
    assert sum([await cluster_redis.xlen(keys.stream("in", s)) for s in range(SHARDS)]) == len(members)
    assert product.stop() == 0
    assert_clean_logs(product)


def assert_clean_logs(product: Product) -> None:
    logs = product.logs()
    for bad in ("Traceback", "CROSSSLOT", "MOVED", "ClusterError", '"level": "ERROR"'):
        assert bad not in logs, logs[logs.find(bad) - 1500 : logs.find(bad) + 1500]
