"""Fixtures for the Redis Cluster tests: a real local cluster (3 masters, 3 replicas) and the
product (``run.py serve``) pointed at it with a cluster URL, streams split over 6 shards."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from gateway.redis_client import connect
from tests.cluster.local_cluster import LocalCluster
from tests.e2e.conftest import fake_telegram, fake_twilio, smtp_sink  # noqa: F401 - fixtures
from tests.e2e.product import Product, loopback_env
from tests.fakes.smtp import SmtpSink
from tests.fakes.telegram import FakeTelegram
from tests.fakes.twilio import FakeTwilio

SHARDS = 6


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cluster/" in str(item.path):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path_factory.mktemp("cluster"))
    try:
        local.start()
        yield local
    finally:
        local.stop()


@pytest.fixture
async def cluster_redis(cluster: LocalCluster) -> AsyncIterator[Redis]:
    """The product's own client on the cluster, emptied before each test."""
    cluster.flushall()
    client = connect(cluster.url)
    yield client
    await client.aclose()


@pytest.fixture
def cluster_env(
    tmp_path: Path,
    cluster: LocalCluster,
    fake_twilio: FakeTwilio,  # noqa: F811
    fake_telegram: FakeTelegram,  # noqa: F811
    smtp_sink: SmtpSink,  # noqa: F811
) -> dict[str, str]:
    env = loopback_env(tmp_path / "var", fake_twilio.base_url, fake_telegram.base_url, smtp_sink.url)
    env.update(REDIS_URL=cluster.url, STREAM_SHARDS=str(SHARDS))
    os.environ.pop("REDIS_URL", None)
    return env


@pytest.fixture
async def make_product(cluster_env: dict[str, str], tmp_path: Path) -> AsyncIterator[Callable[..., Product]]:
    made: list[Product] = []

    def make(**extra: str) -> Product:
        product = Product({**cluster_env, **extra}, tmp_path / f"product-{len(made)}.log")
        made.append(product)
        return product

    yield make
    for product in made:
        with contextlib.suppress(Exception):
            product.stop()
