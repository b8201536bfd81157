"""Fixtures for end-to-end tests: the real product started with ``run.py serve``."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from tests.e2e.bot_data import seed
from tests.e2e.product import (  # noqa: F401 - the constants are imported from here by the tests
    ACCOUNT_SID,
    AUTH_TOKEN,
    OUR_NUMBER,
    ROOT,
    TELEGRAM_SECRET,
    TELEGRAM_TOKEN,
    Product,
    RasaServer,
    free_port,
    loopback_env,
)
from tests.fakes.smtp import SmtpSink
from tests.fakes.telegram import FakeTelegram
from tests.fakes.twilio import FakeTwilio


@pytest.fixture
async def fake_telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(TELEGRAM_TOKEN) as fake:
        yield fake


@pytest.fixture
async def smtp_sink() -> AsyncIterator[SmtpSink]:
    async with SmtpSink() as sink:
        yield sink


@pytest.fixture
async def fake_twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
        yield fake


@pytest.fixture
def product_env(
    tmp_path: Path, fake_twilio: FakeTwilio, fake_telegram: FakeTelegram, smtp_sink: SmtpSink
) -> dict[str, str]:
    env = loopback_env(tmp_path / "var", fake_twilio.base_url, fake_telegram.base_url, smtp_sink.url)
    os.environ.pop("REDIS_URL", None)
    return env


@pytest.fixture
async def make_product(product_env: dict[str, str], tmp_path: Path) -> AsyncIterator[Callable[..., Product]]:
    made: list[Product] = []

    def make(**extra: str) -> Product:
        product = Product({**product_env, **extra}, tmp_path / f"product-{len(made)}.log")
        made.append(product)
        return product

    yield make
    for product in made:
        with contextlib.suppress(Exception):
            product.stop()
    # A test that failed after a kill -9 may leave the private redis-server behind.
    pidfile = Path(product_env["VAR_DIR"]) / "redis" / "redis.pid"
    with contextlib.suppress(OSError, ValueError, ProcessLookupError):
        os.kill(int(pidfile.read_text()), signal.SIGTERM)


@pytest.fixture(scope="session")
def rasa_server(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[RasaServer]:
    """The session's Rasa server and action server, on the tests' Redis."""
    if not (ROOT / "bot" / ".venv" / "bin" / "rasa").exists():
        pytest.fail("the bot's virtualenv is missing: python3 bot/manage.py venv (run.py test builds it)")
    server = RasaServer({"REDIS_URL": redis_url}, tmp_path_factory.mktemp("rasa") / "rasa.log")
    server.launch()
    server.wait()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def rasa_url(rasa_server: RasaServer) -> str:
    return rasa_server.url


@pytest.fixture(scope="session")
def actions_url(rasa_server: RasaServer) -> str:
    return rasa_server.actions_url


@pytest.fixture
async def bot_product(
    make_product: Callable[..., Product], rasa_url: str, actions_url: str, redis: Redis, redis_url: str
) -> AsyncIterator[Product]:
    await seed(redis)
    product = make_product(RESPONDER="rasa", RASA_URL=rasa_url, ACTIONS_URL=actions_url, REDIS_URL=redis_url)
    await product.start()
    async with aiohttp.ClientSession() as http, http.get(f"{product.url}/readyz") as resp:
        ready = await resp.json()
    assert resp.status == 200, ready  # Redis, Rasa, its action server and the SMTP relay all answer
    assert set(ready["checks"]) == {"redis", "rasa", "actions", "smtp_relay"}
    yield product
    assert product.stop() == 0
