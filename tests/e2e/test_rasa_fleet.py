"""A Rasa fleet: two Rasa servers (each with its action server) sharing their tracker and lock stores
in Redis; the gateway keeps each conversation on one server and, when that server is killed -9
mid-conversation, carries on with the other: the member is asked for their birth date by one server
and answered by the other, nothing lost."""

from __future__ import annotations

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
