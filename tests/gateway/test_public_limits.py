"""Per-address limits on the endpoints anyone may call: the real app on a real Redis, default figures."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from gateway.hours import PARIS, holiday_name
from gateway.settings import Settings
from server.product import Product

Client = TestClient  # type: ignore[type-arg]


@pytest.fixture
async def make_client(redis: Redis, settings_env: dict[str, str]) -> AsyncIterator[Callable[..., object]]:
    made: list[TestClient] = []  # type: ignore[type-arg]

    async def make(**env: str) -> TestClient:  # type: ignore[type-arg]
        figures = ("CALLBACK_BURST", "CALLBACK_INVALID_BURST", "PUBLIC_BURST")
        defaults = {k: v for k, v in settings_env.items() if k not in figures}
        settings = Settings.from_env({**defaults, "SMTP_LISTEN_PORT": "0", **env})
        gateway = Product(settings, redis, roles=frozenset({"web"}))
        client: TestClient = TestClient(TestServer(gateway.build_app(), host="127.0.0.1"))  # type: ignore[type-arg]
        await client.start_server()
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


def next_weekday() -> str:
    day = dt.datetime.now(PARIS).date() + dt.timedelta(days=1)
    while day.weekday() >= 5 or holiday_name(day):
        day += dt.timedelta(days=1)
    return day.isoformat()


def request(n: int) -> dict[str, str]:
    return {"phone": f"06 12 34 56 {n:02d}", "date": next_weekday(), "slot": "14:00-18:00", "reason": "carte"}


async def test_only_accepted_callbacks_count_and_mistakes_have_a_looser_limit_of_their_own(
    make_client: Callable[..., object],
) -> None:
    client: Client = await make_client()  # type: ignore[misc]
    # Ten typing mistakes on the form: each gets its errors back, none counts against the 5 requests.
    mistakes = [await client.post("/callback", data={**request(0), "phone": "06 12"}) for _ in range(10)]
    assert [r.status for r in mistakes] == [400] * 10
    accepted = [(await client.post("/api/callbacks", json=request(n))).status for n in range(5)]
    assert accepted == [201] * 5
    refused = await client.post("/api/callbacks", json=request(9))
    assert refused.status == 429 and int(refused.headers["Retry-After"]) > 0
    body = await refused.json()
    assert body["error"] == "rate_limited" and body["detail"].startswith("Trop de demandes")
    # Without a trusted proxy, X-Forwarded-For is anybody's to write: it changes nothing.
    forged = await client.post("/api/callbacks", json=request(9), headers={"X-Forwarded-For": "203.0.113.9"})
    assert forged.status == 429
    # The form shares the bucket: the refusal is the French form, what was typed kept, the wait stated.
    form = await client.post("/callback", data={**request(8), "name": "Camille Durand", "comment": "Après 16 h"})
    page = await form.text()
    assert form.status == 429 and int(form.headers["Retry-After"]) > 0
    assert re.search(r"réessayer dans \d+ minutes?", page) and 'value="06 12 34 56 08"' in page
    assert 'value="Camille Durand"' in page and "Après 16 h</textarea>" in page
    # Mistakes still get their errors (their own bucket), up to 30 at once; then the same refusal page.
    statuses = [(await client.post("/callback", data={**request(0), "phone": "x"})).status for _ in range(20)]
    assert statuses == [400] * 20
    over = await client.post("/callback", data={**request(0), "phone": "x"})
    assert over.status == 429 and "Trop de demandes" in await over.text() and 'value="x"' in await over.text()


async def test_behind_a_trusted_proxy_the_address_it_saw_counts(make_client: Callable[..., object]) -> None:
    client: Client = await make_client(TRUSTED_PROXY_HOPS="1", CALLBACK_INVALID_BURST="5")  # type: ignore[misc]
    for _ in range(5):
        assert (
            await client.post("/api/callbacks", data=b"{", headers={"X-Forwarded-For": "198.51.100.7"})
        ).status == 400
    # The client wrote "203.0.113.1" itself; our proxy appended the address it saw: that one counts.
    spoofed = await client.post("/api/callbacks", data=b"{", headers={"X-Forwarded-For": "203.0.113.1, 198.51.100.7"})
    assert spoofed.status == 429
    other = await client.post("/api/callbacks", data=b"{", headers={"X-Forwarded-For": "198.51.100.8"})
    assert other.status == 400
    # IPv6 clients are counted per /64.
    for i in range(5):
        await client.post("/api/callbacks", data=b"{", headers={"X-Forwarded-For": f"2001:db8:1:2::{i + 1}"})
    same_block = await client.post("/api/callbacks", data=b"{", headers={"X-Forwarded-For": "2001:db8:1:2::ff"})
    assert same_block.status == 429


async def test_web_chat_sessions_and_unsubscribe_pages_are_limited_webhooks_are_not(
    make_client: Callable[..., object],
) -> None:
    client: Client = await make_client(TWILIO_ACCOUNT_SID="AC" + "2" * 32, TWILIO_AUTH_TOKEN="t" * 32,
                                       TWILIO_FROM="+33700000003")  # type: ignore[misc]  # fmt: skip
    origin = {"Origin": "http://127.0.0.1:8080"}  # the default PUBLIC_URL, allowed by default
    sessions = [(await client.post("/webchat/session", json={}, headers=origin)).status for _ in range(21)]
    assert sessions[:20] == [200] * 20 and sessions[20] == 429
    pages = [(await client.get("/desabonnement/nimportequoi")).status for _ in range(21)]
    assert 429 not in pages[:20] and pages[20] == 429
    # Provider webhooks are protected by their signatures, not by address: never 429.
    unsigned = [(await client.post("/sms/twilio/inbound", data={"Body": "x"})).status for _ in range(40)]
    assert set(unsigned) == {403}


async def test_metrics_can_require_a_token(make_client: Callable[..., object]) -> None:
    client: Client = await make_client(METRICS_TOKEN="jeton-prometheus-123")  # type: ignore[misc]
    assert (await client.get("/metrics")).status == 401
    assert (await client.get("/metrics", headers={"Authorization": "Bearer faux"})).status == 401
    ok = await client.get("/metrics", headers={"Authorization": "Bearer jeton-prometheus-123"})
    assert ok.status == 200 and "gateway_inbound" in await ok.text()
    open_client: Client = await make_client()  # type: ignore[misc]
    assert (await open_client.get("/metrics")).status == 200  # not set: open, as Prometheus expects by default
