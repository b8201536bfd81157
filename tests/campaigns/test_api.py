"""The campaign JSON API over HTTP, as a script or another tool would use it: session, CSRF, a draft,
its audience uploaded as a file, counted, scheduled; bad uploads refused with a French reason."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from campaigns.rules import PARIS
from gateway.settings import Settings
from members.records import Member, MemberStore
from server.product import Product
from staff.users import Users
from tests.e2e.product import free_port

PASSWORD = "une-phrase-de-passe-solide"


@pytest.fixture
async def staff(redis: Redis, settings_env: dict[str, str]) -> AsyncIterator[tuple[aiohttp.ClientSession, str, str]]:
    """A logged-in communications officer: (session, base URL, CSRF token)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    twilio = {"TWILIO_ACCOUNT_SID": "AC" + "0" * 32, "TWILIO_AUTH_TOKEN": "t" * 32, "TWILIO_FROM": "+33100000000",
              "TWILIO_API_BASE": "http://127.0.0.1:9"}  # fmt: skip  # the web role sends nothing
    settings = Settings.from_env({**settings_env, **twilio, "PUBLIC_URL": base})
    gw = Product(settings, redis, roles=frozenset({"web"}), channel_names=["email", "sms"])
    server = TestServer(gw.build_app(), host="127.0.0.1", port=port)
    await server.start_server()
    await Users(redis).create("claire", PASSWORD, first_name="Claire", role="communications", skills=[])
    store = MemberStore(redis)
    async with redis.pipeline(transaction=False) as pipe:
        for i in range(1, 6):
            store.write(pipe, Member(f"M{i:07d}", "Léa", f"Roux{i}", "1980-05-05", f"+3319900{i:04d}", "",
                                     "confort", "Bretagne", "famille", "51.00", "2027-03-10"))  # fmt: skip
        await pipe.execute()
    async with aiohttp.ClientSession(headers={"Origin": base}, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(f"{base}/console/login", data={"login": "claire", "password": PASSWORD}) as resp:
            assert resp.status == 200 and resp.url.path == "/console/campaigns"
            csrf = re.search(r'name="csrf-token" content="([^"]+)"', await resp.text())
        assert csrf is not None
        yield http, base, csrf.group(1)
    await server.close()


async def test_a_draft_with_an_uploaded_list_is_counted_and_scheduled(
    staff: tuple[aiohttp.ClientSession, str, str],
) -> None:
    http, base, csrf = staff
    effective = (dt.datetime.now(PARIS).date() + dt.timedelta(days=70)).replace(day=1)
    spec = {"kind": "contribution_change", "title": "Cotisation 2027", "effective_date": effective.isoformat(),
            "channels": ["sms"], "values": {"new_contribution": "53", "change_percent": "3.9"},
            "window": {"start": "00:00", "end": "23:59", "weekdays": [1, 2, 3, 4, 5, 6]}}  # fmt: skip
    async with http.post(f"{base}/console/api/campaigns", json=spec) as resp:
        assert resp.status == 403  # no CSRF token
    headers = {"X-CSRF-Token": csrf}
    async with http.post(f"{base}/console/api/campaigns", json=spec, headers=headers) as resp:
        assert resp.status == 201
        cid = (await resp.json())["id"]
    upload = f"{base}/console/api/campaigns/{cid}/audience"
    sheet = "N° adhérent;Nom\r\nM0000001;Roux1\r\nM0000003;Roux3\r\nM0000404;Inconnu\r\n".encode("cp1252")
    async with http.post(upload, data=sheet) as resp:
        assert resp.status == 403  # an upload changes the audience: CSRF applies
    async with http.post(upload, data="Prénom;Ville\r\n;\r\n".encode(), headers=headers) as resp:
        assert resp.status == 400 and "aucun numéro" in (await resp.json())["fields"]["file"]
    async with http.post(upload, data=b"M0000001\n" * (3 * 2**20), headers=headers) as resp:
        assert resp.status == 400 and "trop volumineux" in (await resp.json())["fields"]["file"]
    async with http.post(upload, data=sheet, headers=headers) as resp:
        assert resp.status == 200
        assert await resp.json() == {"members": 3, "unknown": 1, "bad_lines": [], "bad_count": 0, "variables": ["nom"]}
    async with http.post(f"{base}/console/api/campaigns/{cid}/count", json={}, headers=headers) as resp:
        assert await resp.json() == {"total": 2, "by_channel": {"sms": 2}}
    async with http.get(f"{base}/console/api/campaigns/{cid}") as resp:
        assert (await resp.json())["campaign"]["audience_label"] == "liste importée de 3 adhérents"
    async with http.post(f"{base}/console/api/campaigns/{cid}/schedule", json={}, headers=headers) as resp:
        assert resp.status == 200 and (await resp.json())["planned"] == 2
    async with http.post(upload, data=sheet, headers=headers) as resp:
        assert resp.status == 400 and "brouillon" in (await resp.json())["fields"]["file"]


async def test_console_socket_refuses_a_foreign_origin_even_with_a_valid_session(
    staff: tuple[aiohttp.ClientSession, str, str],
) -> None:
    """A page on another site cannot open the console's live feed with the agent's cookie."""
    http, base, _ = staff
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(f"{base}/console/ws", headers={"Origin": "https://evil.example"})
    assert refused.value.status == 403
    async with http.ws_connect(f"{base}/console/ws", headers={"Origin": base}) as ws:
        assert not ws.closed
