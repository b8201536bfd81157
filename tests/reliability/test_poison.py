"""A message whose handling always fails is set aside after a bounded number of attempts, shown to
supervisors with its error, and blocks neither its own conversation nor anyone else's."""

from __future__ import annotations

import re

import aiohttp

from staff.users import Users
from tests.reliability.conftest import report
from tests.reliability.rig import Rig
from tests.reliability.scenarios import poison

PASSWORD = "une-phrase-de-passe-solide"


async def test_a_poison_message_goes_to_the_dead_letters_and_blocks_nobody(rig: Rig) -> None:
    fig = report(await poison(rig))
    assert fig.notes["answered while it failed"] == 2 and (fig.replies, fig.lost) == (2, 0)
    assert fig.notes["dead letters"] == 1 and fig.notes["error"].startswith("ResponseError")
    assert fig.notes["attempts left behind"] == 0
    # Supervisors see it in the API (and the dashboard), with the error and without the text.
    redis = await rig.redis()
    await Users(redis).create("sophie", PASSWORD, first_name="Sophie", role="supervisor", skills=[])
    await redis.aclose()
    base = rig.product.url
    async with aiohttp.ClientSession(headers={"Origin": base}, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(f"{base}/console/login", data={"login": "sophie", "password": PASSWORD}) as resp:
            assert resp.url.path == "/console/supervisor"
            assert re.search(r"Messages mis de côté", await resp.text())
        async with http.get(f"{base}/console/api/dead-letters") as resp:
            dead = await resp.json()
    assert dead["count"] == 1
    [item] = dead["items"]
    assert (item["stream"], item["channel"], item["direction"]) == ("in", "sms", "in")
    assert "not a valid float" in item["error"] and "Bonjour" not in str(item) and "7777" not in item["urn"]
