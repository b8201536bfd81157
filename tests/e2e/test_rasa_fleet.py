"""A Rasa fleet: two Rasa servers (each with its action server) sharing their tracker and lock stores
in Redis; the gateway keeps each conversation on one server and, when that server is killed -9
mid-conversation, carries on with the other: the member is asked for their birth date by one server
and answered by the other, nothing lost."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from gateway import keys
from gateway.rasa import servers_for
from tests.e2e.bot_data import CAMILLE, seed
from tests.e2e.product import Product, RasaServer
from tests.e2e.test_bot_e2e import sms_to, turn
from tests.fakes.twilio import FakeTwilio


@pytest.fixture
def fleet(tmp_path: Path, redis_url: str) -> Iterator[list[RasaServer]]:
    """Two Rasa servers of our own, side by side (the session's ``rasa_url`` server is left alone)."""
    servers = [RasaServer({"REDIS_URL": redis_url}, tmp_path / f"rasa-{n}.log") for n in range(2)]
    for server in servers:
        server.launch()
    for server in servers:
        server.wait()
    yield servers
    for server in servers:
        server.stop()


@pytest.mark.timeout(420)
async def test_a_conversation_moves_to_another_server_when_its_server_dies(
    fleet: list[RasaServer],
    make_product: Callable[..., Product],
    fake_twilio: FakeTwilio,
    redis: Redis,
    redis_url: str,
) -> None:
    await seed(redis)
    urls = [server.url for server in fleet]
    product = make_product(
        RESPONDER="rasa",
        REDIS_URL=redis_url,
        RASA_URL=",".join(urls),
        ACTIONS_URL=",".join(s.actions_url for s in fleet),
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
        next(server for server in fleet if server.url == owner).kill9()
        # The other server carries on where it was: the birth date is taken as the answer it waited for.
        listing = await turn(send, inbox, "12 mars 1975", "Quel remboursement")
        assert "1. lunettes du " in listing[0] and "2. pharmacie du " in listing[0]
        [answer] = await turn(send, inbox, "2", "pharmacie")
        assert "est payé : 18,80 €" in answer
        async with session.get(f"{product.url}/readyz") as resp:
            assert resp.status == 200  # one server of the fleet is enough
    assert product.stop() == 0
    assert "bot server unavailable, trying the next" in product.logs()


def children_of(pid: int) -> dict[int, str]:
    """The processes ``pid`` started (directly), with their command lines."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
    return found


async def ready_checks(session: aiohttp.ClientSession, product: Product) -> tuple[int, dict[str, str]]:
    async with session.get(f"{product.url}/readyz") as resp:
        return resp.status, (await resp.json())["checks"]


async def down_then_ready(session: aiohttp.ClientSession, product: Product, check: str, timeout: float = 240) -> float:
    """Waits until ``/readyz`` names ``check`` as missing, then until it is ready again; returns the seconds."""
    started = time.monotonic()
    seen_down = False
    while time.monotonic() - started < timeout:
        status, checks = await ready_checks(session, product)
        seen_down = seen_down or (status == 503 and checks[check] != "ok")
        if seen_down and status == 200:
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise AssertionError(f"{check}: seen down {seen_down}, not ready again within {timeout:.0f} s")


@pytest.mark.timeout(600)
async def test_serve_starts_a_dead_rasa_server_and_action_server_again(
    make_product: Callable[..., Product], fake_twilio: FakeTwilio, redis: Redis, redis_url: str
) -> None:
    await seed(redis)
    product = make_product(RESPONDER="rasa", REDIS_URL=redis_url)  # no RASA_URL: serve runs the bot itself
    await product.start(timeout=400)
    assert product.proc is not None
    bots = children_of(product.proc.pid)
    [rasa] = [pid for pid, cmd in bots.items() if " run --enable-api " in cmd]
    [actions] = [pid for pid, cmd in bots.items() if " rasa_sdk " in cmd]
    async with aiohttp.ClientSession() as session:
        assert (await ready_checks(session, product))[0] == 200
        send, inbox = sms_to(product, fake_twilio, session, CAMILLE.phone)
        await turn(send, inbox, "bjr", "Bonjour")
        await turn(send, inbox, "ou en est mon remboursement", "date de naissance")
        # The only Rasa server dies mid-conversation: serve starts it again on its port.
        os.kill(rasa, signal.SIGKILL)
        await down_then_ready(session, product, "rasa")
        listing = await turn(send, inbox, "12 mars 1975", "Quel remboursement", timeout=60)
        assert "1. lunettes du " in listing[0] and "2. pharmacie du " in listing[0]
        # Then the action server: the Rasa server stays, its actions answer again.
        os.kill(actions, signal.SIGKILL)
        await down_then_ready(session, product, "actions")
        [answer] = await turn(send, inbox, "2", "pharmacie", timeout=60)
        assert "est payé : 18,80 €" in answer
    now = children_of(product.proc.pid)
    assert rasa not in now and actions not in now and len(now) == len(bots)
    assert product.stop() == 0
    logs = product.logs()
    assert '"role": "rasa"' in logs and '"role": "actions"' in logs, logs[-2000:]
