"""kill -9 of a Redis Cluster master while members write by SMS: its replica takes over and the
product carries on. Twilio's behaviour is played by the test: a webhook not answered 200 is sent
again (same MessageSid) a little later. The figures (failover time, refusals, lost and duplicated
replies) are printed; see README "Redis Cluster" for what an acknowledged write can lose."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from gateway import keys
from gateway.redis_client import connect
from tests.cluster.conftest import SHARDS
from tests.cluster.local_cluster import LocalCluster
from tests.cluster.test_cluster_flows import quiet
from tests.e2e.product import Product
from tests.e2e.test_sms_e2e import post_sms
from tests.fakes.twilio import FakeTwilio

MEMBERS = 240
RATE_PER_S = 30


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A cluster of its own (this test breaks it), with a short node timeout."""
    local = LocalCluster(tmp_path / "cluster", node_timeout_ms=1000)
    try:
        local.start()
        yield local
    finally:
        local.stop()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("wait_ms", ["0", "50"], ids=["no-wait", "wait-replica"])
async def test_kill_9_of_a_master_during_inbound_sms(
    cluster: LocalCluster,
    make_product: Callable[..., Product],
    fake_twilio: FakeTwilio,
    wait_ms: str,
) -> None:
    product = make_product(INBOUND_WAIT_REPLICA_MS=wait_ms)
    await product.start()
    redis = connect(cluster.url)
    await redis.initialize()
    victim_addr = redis.get_node_from_key(keys.stream("in", 0)).name
    [victim] = [n for n in cluster.nodes if n.addr == victim_addr]
    [heir] = [n for n in cluster.nodes if n.info("INFO", "replication").get("master_port") == str(victim.port)]
    promoted_at = 0.0

    async def watch_promotion() -> None:
        nonlocal promoted_at
        while await asyncio.to_thread(lambda: heir.info("INFO", "replication").get("role")) != "master":
            await asyncio.sleep(0.05)
        promoted_at = time.monotonic()

    members = [f"+3363998{i:04d}" for i in range(MEMBERS)]
    answered: dict[str, float] = {}  # member -> when the webhook was finally answered 200
    refused = Counter[str]()
    latencies: list[float] = []
    killed_at = 0.0

    async def one(session: aiohttp.ClientSession, member: str) -> None:
        sid = None
        for _ in range(60):  # Twilio-like: not answered 200, sent again a little later
            started = time.monotonic()
            try:
                status, sid = await post_sms(session, product, member, "Bonjour", sid)
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            if status == 200:
                answered[member] = time.monotonic()
                latencies.append(time.monotonic() - started)
                return
            refused[str(status)] += 1
            await asyncio.sleep(0.5)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        tasks = []
        for i, member in enumerate(members):
            if i == MEMBERS // 3:
                cluster.kill9(victim)
                killed_at = time.monotonic()
                watcher = asyncio.create_task(watch_promotion())
            tasks.append(asyncio.create_task(one(session, member)))
            await asyncio.sleep(1 / RATE_PER_S)
        await asyncio.gather(*tasks)
        await asyncio.wait_for(watcher, timeout=30)
    # The cluster's own view: when a replica had taken the dead master's slots.
    cluster.wait_healthy(timeout=30)
    healed_at = time.monotonic()

    await asyncio.sleep(1.0)
    for _ in range(300):
        if len({m.to for m in fake_twilio.messages}) >= len(answered):
            break
        await asyncio.sleep(0.1)
    await quiet(redis, timeout=60)
    replies = Counter(m.to for m in fake_twilio.messages)
    lost = sorted(set(answered) - set(replies))
    duplicated = sorted(m for m, n in replies.items() if n > 1)
    after_kill = [m for m in answered if answered[m] > killed_at]
    restarts = product.logs().count("child exited, restarting")
    stream_entries = sum([await redis.xlen(keys.stream("in", s)) for s in range(SHARDS)])
    latencies.sort()
    print(
        f"\nfailover (INBOUND_WAIT_REPLICA_MS={wait_ms}): replica promoted {promoted_at - killed_at:.1f}s after the kill, "
        f"cluster healthy by {healed_at - killed_at:.1f}s; "
        f"{len(answered)}/{MEMBERS} webhooks answered 200 ({len(after_kill)} after the kill), "
        f"refusals {dict(refused)}, lost {len(lost)}, duplicated {len(duplicated)}, "
        f"inbound entries {stream_entries}, child restarts {restarts}, "
        f"webhook p50 {latencies[len(latencies) // 2] * 1000:.1f} ms p99 {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms"
    )
    await redis.aclose()
    assert len(answered) == MEMBERS  # every member's message was accepted in the end (after retries)
    assert after_kill  # the product carried on after the failover
    assert restarts == 0  # no crash loop
    assert duplicated == []
    # Replication is asynchronous: a write acknowledged by the dead master and not yet copied is lost.
    # The test fails on such a loss only with the replica wait, which is there to prevent it.
    if wait_ms != "0":
        assert lost == []
    assert product.stop() == 0
