"""Shared fixtures: one real redis-server per test session, flushed between tests."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from gateway.redis_client import connect
from gateway.redis_server import PrivateRedis
from gateway.settings import Settings


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: PrivateRedis) -> str:
    return redis_server.url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = connect(redis_url)  # the product's client
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
def settings_env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    """A minimal environment for Settings.from_env; tests add channel credentials."""
    return {
        "VAR_DIR": str(tmp_path / "var"),
        "REDIS_URL": redis_url,
        "SECRET_KEY": "test-secret-key",
        # The SMTP listener on a port the system picks: never the product's 2525, which a developer's
        # run.py serve may hold on the same machine.
        "SMTP_LISTEN_PORT": "0",
        "CLAIM_IDLE_MS": "1000",
        "SEND_BACKOFF_BASE_S": "0.05",
        "SEND_BACKOFF_MAX_S": "0.5",
        "PATH": os.environ.get("PATH", ""),
        # Tests send many requests from one address; tests/gateway/test_public_limits.py checks the limits.
        "CALLBACK_BURST": "100000",
        "CALLBACK_INVALID_BURST": "100000",
        "PUBLIC_BURST": "100000",
    }


@pytest.fixture
def settings(settings_env: dict[str, str]) -> Settings:
    return Settings.from_env(settings_env)
