"""The gateway with the real Rasa server (started once per test session from bot/): a member's
SMS gets the bot's answer, and a status question gets nothing personal before verification."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator

import aiohttp
import pytest
from redis.asyncio import Redis

from gateway import keys
from gateway.members import ALL_MEMBERS
from tests.e2e.product import ROOT, Product, free_port
from tests.e2e.test_sms_e2e import post_sms, redis_of
from tests.fakes.twilio import FakeTwilio

MANAGE = ROOT / "bot" / "manage.py"


@pytest.fixture(scope="session")
def rasa_url(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[str]:
    if not (ROOT / "bot" / ".venv" / "bin" / "rasa").exists():
        pytest.fail("the bot's virtualenv is missing: python3 bot/manage.py venv (run.py test builds it)")
    subprocess.run(["python3", str(MANAGE), "train"], check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    log = (tmp_path_factory.mktemp("rasa") / "rasa.log").open("wb")
    proc = subprocess.Popen(
        ["python3", str(MANAGE), "run", "--port", str(port)],
        stdout=log,
        stderr=log,
        env={**os.environ, "REDIS_URL": redis_url},  # trackers and locks in Redis, as serve runs it
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert proc.poll() is None, "rasa exited during start-up"
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{url}/status", timeout=1) as resp:
                if resp.status == 200:
                    break
        time.sleep(0.5)
    yield url
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


async def test_sms_answered_by_the_bot_without_disclosure(
    make_product: Callable[..., Product], fake_twilio: FakeTwilio, rasa_url: str, redis: Redis
) -> None:
    product = make_product(RESPONDER="rasa", RASA_URL=rasa_url)
    await product.start()
    product_redis = await redis_of(product)
    assert await product_redis.scard(ALL_MEMBERS) == 500  # synthetic members loaded on first start
    member = await product_redis.hgetall(f"mbr:{{{await product_redis.srandmember(ALL_MEMBERS)}}}")
    sender = member.get("phone") or "+33199001234"
    async with aiohttp.ClientSession() as session:
        assert (await post_sms(session, product, sender, "bjr"))[0] == 200
        [hello] = await fake_twilio.wait_for(1, timeout=30)
        assert hello.body.startswith("Bonjour ! Je suis l'assistant")
        assert (await post_sms(session, product, sender, "ou en est mon rembourssement stp"))[0] == 200
        second = (await fake_twilio.wait_for(2, timeout=30))[1]
    assert "vérifier votre identité" in second.body
    for personal in (member["last_name"], member["birth_date"], member["number"]):
        assert personal not in hello.body + second.body
    # Rasa keeps the conversation's tracker in Redis (not in its own memory), under the conversation id.
    contact = await product_redis.get(keys.address(f"tel:{sender}"))
    conv_id = await product_redis.get(keys.open_conversation(contact, "sms"))
    await product_redis.aclose()
    assert await redis.exists(f"rasa:tracker:{conv_id}")
    assert product.stop() == 0
