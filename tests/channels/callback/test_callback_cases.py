"""Callback requests: the validation table, the JSON API and the HTML form (real Redis)."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from channels.callback import ValidationError, validate
from channels.callback.validation import PARIS
from gateway import keys
from gateway.app import Gateway
from gateway.envelope import Message
from gateway.hours import holiday_name
from gateway.settings import Settings

CASES = json.loads((Path(__file__).parent / "cases.json").read_text())
NOW = dt.datetime(2026, 11, 24, 10, 0, tzinfo=PARIS)


@pytest.mark.parametrize("case", CASES, ids=[c["label"] for c in CASES])
def test_validation(case: dict[str, Any]) -> None:
    body = dict(case["body"])
    now = dt.datetime.fromisoformat(body.pop("_now")) if "_now" in body else NOW
    if "errors" in case:
        with pytest.raises(ValidationError) as exc:
            validate(body, now)
        assert sorted(exc.value.errors) == sorted(case["errors"])
        assert all(exc.value.errors.values())  # a French message for each field
        return
    req = validate(body, now)
    for field, value in case["expected"].items():
        got = getattr(req, field)
        assert (got.isoformat() if isinstance(got, dt.datetime) else got) == value


def next_weekday() -> str:
    day = dt.datetime.now(PARIS).date() + dt.timedelta(days=1)
    while day.weekday() >= 5 or holiday_name(day):  # the callback form refuses public holidays
        day += dt.timedelta(days=1)
    return day.isoformat()


@pytest.fixture
async def client(redis: Redis, settings: Settings) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    gateway = Gateway(settings, redis, roles=frozenset({"web"}), channel_names=["callback"])
    c: TestClient = TestClient(TestServer(gateway.build_app(), host="127.0.0.1"))  # type: ignore[type-arg]
    await c.start_server()
    yield c
    await c.close()


async def test_api_stores_one_request_per_idempotency_key(client: TestClient, redis: Redis) -> None:  # type: ignore[type-arg]
    body = {"phone": "06 12 34 56 78", "date": next_weekday(), "slot": "09:00-12:00", "reason": "devis"}
    first = await client.post("/api/callbacks", json=body, headers={"Idempotency-Key": "k-1"})
    again = await client.post("/api/callbacks", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status == again.status == 201
    assert "Idempotent-Replayed" not in first.headers and again.headers["Idempotent-Replayed"] == "true"
    rid = (await first.json())["id"]
    assert (await again.json())["id"] == rid
    # The same key for another request is a client bug: refused, the first request untouched.
    other = await client.post("/api/callbacks", json={**body, "reason": "carte"}, headers={"Idempotency-Key": "k-1"})
    assert other.status == 422 and (await other.json())["error"]["code"] == "idempotency_key_reused"
    record = await redis.hgetall(keys.callback(rid))
    assert (record["phone"], record["status"], record["reason"]) == ("+33612345678", "pending", "devis")
    assert await redis.zscore(keys.CALLBACKS_DUE, rid) is not None
    [(_, fields)] = await redis.xrange(keys.stream("in", 0))
    msg = Message.from_json(fields["m"])
    assert (msg.kind, msg.urn, msg.meta["callback_id"], msg.meta["reply_channel"]) == (
        "callback_request",
        "tel:+33612345678",
        rid,
        "callback",
    )


async def test_api_errors_are_per_field_and_never_5xx(client: TestClient) -> None:  # type: ignore[type-arg]
    resp = await client.post("/api/callbacks", json={"phone": "x"})
    assert resp.status == 400
    fields = {f["field"] for f in (await resp.json())["error"]["fields"]}
    assert {"phone", "date", "reason"} <= fields
    for raw in (b"", b"null", b"[1]", b"\xff\xfe", b'{"phone": "' + b"9" * 10_000 + b'"}'):
        assert (await client.post("/api/callbacks", data=raw)).status == 400


async def test_form_without_javascript(client: TestClient, redis: Redis) -> None:  # type: ignore[type-arg]
    page = await client.get("/callback")
    html = await page.text()
    assert page.status == 200 and "Être rappelé" in html
    key = re.search(r'name="request_key" value="([^"]+)"', html)
    assert key is not None
    form = {
        "phone": "0612345678",
        "date": next_weekday(),
        "slot": "12:00-14:00",
        "reason": "carte",
        "comment": "<script>alert(1)</script>",
        "request_key": key.group(1),
    }
    done = await client.post("/callback", data=form)
    assert done.status == 200 and "est enregistrée" in await done.text()
    await client.post("/callback", data=form)  # double click
    assert await redis.xlen(keys.stream("in", 0)) == 1
    bad = await client.post("/callback", data={**form, "phone": "12", "comment": "<b>x</b>"})
    text = await bad.text()
    assert bad.status == 400 and "numéro" in text
    assert "<b>x</b>" not in text and "&lt;b&gt;x&lt;/b&gt;" in text


async def test_a_link_prefills_the_day_and_half_day(client: TestClient) -> None:  # type: ignore[type-arg]
    """The bot's « rappelez-moi demain matin » links to the form with the day and the morning chosen."""
    day = dt.date(2030, 6, 4)  # a Tuesday, no public holiday
    page = await (await client.get(f"/callback?date={day.isoformat()}&period=matin")).text()
    assert f'value="{day.isoformat()}"' in page and '<option value="09:00-12:00" selected>' in page
    page = await (await client.get(f"/callback?date={day.isoformat()}&period=apres-midi")).text()
    assert '<option value="12:00-14:00" selected>' in page
    page = await (await client.get("/callback?date=n'importe&slot=<b>")).text()
    assert "selected>" not in page and "&lt;b&gt;" not in page
