"""A Rasa fleet: two Rasa servers (each with its action server) sharing their tracker and lock stores
in Redis; the gateway keeps each conversation on one server and, when that server is killed -9
mid-conversation, carries on with the other: the member is asked for their birth date by one server
and answered by the other, nothing lost."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from gateway import keys
from gateway.rasa import servers_for
from tests.e2e.bot_data import CAMILLE, seed
from tests.e2e.conftest import MANAGE
from tests.e2e.product import Product, free_port
from tests.e2e.test_bot_e2e import sms_to, turn
from tests.fakes.twilio import FakeTwilio


@pytest.fixture
def fleet(tmp_path: Path, redis_url: str, rasa_url: str) -> Iterator[list[tuple[subprocess.Popen[bytes], str, str]]]:
    """Two Rasa servers of our own (the session's ``rasa_url`` server has trained the model already)."""
    servers = []
    for n in range(2):
        port, actions_port = free_port(), free_port()
        log = (tmp_path / f"rasa-{n}.log").open("wb")
        proc = subprocess.Popen(
            ["python3", str(MANAGE), "run", "--port", str(port), "--actions-port", str(actions_port)],
            stdout=log,
            stderr=log,
            env={**os.environ, "REDIS_URL": redis_url},
        )
        servers.append((proc, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{actions_port}"))
    deadline = time.monotonic() + 240
    for proc, url, _ in servers:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "a Rasa server exited during start-up"
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{url}/status", timeout=1) as resp:
                    if resp.status == 200:
                        break
            time.sleep(0.5)
    yield servers
    for proc, _, _ in servers:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc, _, _ in servers:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.timeout(420)
async def test_a_conversation_moves_to_another_server_when_its_server_dies(
    fleet: list[tuple[subprocess.Popen[bytes], str, str]],
    make_product: Callable[..., Product],
    fake_twilio: FakeTwilio,
    redis: Redis,
    redis_url: str,
) -> None:
    await seed(redis)
    urls = [url for _, url, _ in fleet]
    product = make_product(
        RESPONDER="rasa", REDIS_URL=redis_url, RASA_URL=",".join(urls), ACTIONS_URL=",".join(a for _, _, a in fleet)
    )
    await product.start()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{product.url}/readyz") as resp:
            assert resp.status == 200 and (await resp.json())["checks"]["rasa"] == "ok"
        send, inbox = sms_to(product, fake_twilio, session, CAMILLE.phone)
        await turn(send, inbox, "bjr", "Bonjour")
        asked = await turn(send, inbox, "ou en est mon remboursement", "date de naissance")
        assert asked[0] == "Pour vous répondre, je dois d'abord vérifier votre identité."
        # The server this conversation lives on dies, in the middle of the identity check.
        contact = await redis.get(keys.address(f"tel:{CAMILLE.phone}"))
        conv_id = await redis.get(keys.open_conversation(str(contact), "sms"))
        owner = servers_for(str(conv_id), urls)[0]
        proc = next(p for p, url, _ in fleet if url == owner)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        # The other server carries on where it was: the birth date is taken as the answer it waited for.
        listing = await turn(send, inbox, "12 mars 1975", "Quel remboursement")
        assert "1. lunettes du " in listing[0] and "2. pharmacie du " in listing[0]
        [answer] = await turn(send, inbox, "2", "pharmacie")
        assert "est payé : 18,80 €" in answer
        async with session.get(f"{product.url}/readyz") as resp:
            assert resp.status == 200  # one server of the fleet is enough
    assert product.stop() == 0
    assert "bot server unavailable, trying the next" in product.logs()
