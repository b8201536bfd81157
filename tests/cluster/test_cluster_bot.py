"""The bot with the product on a Redis Cluster: the action server reads member records, verification
state and the audit trail on the cluster; Rasa's tracker and lock stores, which speak to one
standalone Redis only, are on ``TRACKER_REDIS_URL``. A member is verified and answered by SMS."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from gateway import keys
from tests.cluster.local_cluster import LocalCluster
from tests.e2e.bot_data import CAMILLE, seed
from tests.e2e.product import Product, RasaServer
from tests.e2e.test_bot_e2e import sms_to, turn
from tests.fakes.twilio import FakeTwilio


@pytest.fixture
def rasa_on_cluster(tmp_path: Path, cluster: LocalCluster, redis_url: str) -> Iterator[RasaServer]:
    """A Rasa server whose actions use the cluster and whose trackers are in the standalone test Redis."""
    server = RasaServer({"REDIS_URL": cluster.url, "TRACKER_REDIS_URL": redis_url}, tmp_path / "rasa.log")
    server.launch()
    server.wait()
    yield server
    server.stop()


@pytest.mark.timeout(420)
async def test_a_member_is_verified_and_answered_with_the_product_on_a_cluster(
    rasa_on_cluster: RasaServer,
    cluster_redis: Redis,
    make_product: Callable[..., Product],
    fake_twilio: FakeTwilio,
) -> None:
    await seed(cluster_redis)
    product = make_product(RESPONDER="rasa", RASA_URL=rasa_on_cluster.url, ACTIONS_URL=rasa_on_cluster.actions_url)
    await product.start()
    async with aiohttp.ClientSession() as session:
        send, inbox = sms_to(product, fake_twilio, session, CAMILLE.phone)
        await turn(send, inbox, "bjr", "Bonjour")
        await turn(send, inbox, "ou en est mon remboursement", "date de naissance")
        listing = await turn(send, inbox, "12 mars 1975", "Quel remboursement")
        assert "2. pharmacie du " in listing[0]
        [answer] = await turn(send, inbox, "2", "pharmacie")
        assert "est payé : 18,80 €" in answer
    audit = await cluster_redis.xrange(keys.member_audit(CAMILLE.number))
    assert [e["what"] for _, e in audit] == ["claims_list", "claim"]
    assert product.stop() == 0
    logs = product.logs()
    assert "CROSSSLOT" not in logs and "MOVED" not in logs
