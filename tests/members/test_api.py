"""The records API in the product's application (real Redis): keys, versions, If-Match, bulk lines, audit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from gateway import keys
from gateway.settings import Settings
from members.apikeys import ApiKeyError, ApiKeys
from server.product import Product

MEMBER = {
    "first_name": "Léa", "last_name": "Martin", "birth_date": "1980-02-14", "phone": "06 12 34 56 78",
    "email": "lea.martin@example.org", "cover_level": "confort", "region": "Normandie", "segment": "famille",
    "contribution_eur": "61,20", "contribution_call_date": "2027-01-05",
}  # fmt: skip
CLAIM = {
    "care_date": "2026-11-02", "kind": "consultation", "amount_eur": "30.00", "reimbursed_eur": "",
    "status": "in_progress", "payment_date": "", "teletransmitted": True,
}  # fmt: skip


@pytest.fixture
async def client(redis: Redis, settings_env: dict[str, str]) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    product = Product(Settings.from_env({**settings_env, "API_BURST": "1000"}), redis, roles=frozenset({"web"}))
    c: TestClient = TestClient(TestServer(product.build_app(), host="127.0.0.1"))  # type: ignore[type-arg]
    await c.start_server()
    yield c
    await asyncio.wait_for(c.close(), 30)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_keys_are_shown_once_kept_as_a_hash_and_refused_once_revoked(client: TestClient, redis: Redis) -> None:  # type: ignore[type-arg]
    store = ApiKeys(redis)
    token = await store.create("gestion", "write")
    dump = str([await redis.hgetall(k) async for k in redis.scan_iter("gw:apikey*")])
    assert token not in dump and token[4:] not in dump  # only the digest is stored
    with pytest.raises(ApiKeyError, match="existe déjà"):
        await store.create("gestion", "read")
    url = "/api/v1/records/members/M0000001"
    resp = await client.put(url, json={**MEMBER, "version": 1}, headers=bearer(token))
    assert resp.status == 200, await resp.text()
    resp = await client.get(url)
    assert resp.status == 401 and "manquante" in (await resp.json())["detail"]
    resp = await client.get(url, headers=bearer("mgw_" + "x" * 43))
    assert resp.status == 401 and "inconnue" in (await resp.json())["detail"]
    assert await store.revoke("gestion")
    resp = await client.get(url, headers=bearer(token))
    body = await resp.json()
    assert resp.status == 401 and body["detail"] == "Clé d'API révoquée. / API key revoked."
    reader = await store.create("lecture", "read")
    assert (await client.get(url, headers=bearer(reader))).status == 200
    resp = await client.put(url, json={**MEMBER, "version": 2}, headers=bearer(reader))
    assert resp.status == 403
    assert [(k.name, k.scope, k.active) for k in await store.list()] == [("gestion", "write", False),
                                                                          ("lecture", "read", True)]  # fmt: skip


async def test_an_older_version_never_overwrites_a_newer_one(client: TestClient, redis: Redis) -> None:  # type: ignore[type-arg]
    h = bearer(await ApiKeys(redis).create("gestion", "write"))
    await client.put("/api/v1/records/members/M0000001", json={**MEMBER, "version": 1}, headers=h)
    url = "/api/v1/records/members/M0000001/claims/C0000001"
    resp = await client.put(url, json={**CLAIM, "version": 5}, headers=h)
    assert resp.status == 200 and (await resp.json()) == {"status": "stored", "version": 5}
    again = await client.put(url, json={**CLAIM, "version": 5}, headers=h)
    assert again.status == 200 and (await again.json())["status"] == "unchanged"  # idempotent
    paid = {**CLAIM, "status": "paid", "reimbursed_eur": "21,00", "payment_date": "2026-11-20"}
    older = await client.put(url, json={**paid, "version": 4}, headers=h)
    assert older.status == 409 and (await older.json())["current_version"] == 5
    stored = await (await client.get(url, headers=h)).json()
    assert stored["status"] == "in_progress" and stored["version"] == 5
    # If-Match: only over the version the caller read.
    stale = await client.put(url, json=paid, headers={**h, "If-Match": '"4"'})
    assert stale.status == 412
    ok = await client.put(url, json=paid, headers={**h, "If-Match": '"5"'})
    assert ok.status == 200 and (await ok.json()) == {"status": "stored", "version": 6}
    stored = await (await client.get(url, headers=h)).json()
    assert (stored["status"], stored["reimbursed_eur"], stored["version"]) == ("paid", "21.00", 6)
    # Delete leaves a tombstone: a late update does not bring the claim back.
    gone = await client.delete(url + "?version=7", headers=h)
    assert gone.status == 200 and (await gone.json())["status"] == "deleted"
    late = await client.put(url, json={**paid, "version": 6}, headers=h)
    assert late.status == 409
    assert (await client.get(url, headers=h)).status == 404
    # Every write is audited, with the key's name, record ids only.
    trail = await redis.xrange(keys.member_audit("M0000001"))
    whats = [(e["what"], e["records"], e["agent"]) for _, e in trail]
    assert ("record_stored", '["claims:C0000001"]', "api:gestion") in whats
    assert ("record_deleted", '["claims:C0000001"]', "api:gestion") in whats
    assert sum(1 for w in whats if w[0] == "record_stored") == 3  # member, claim, claim paid: not the unchanged one


async def test_invalid_fields_are_listed_and_nothing_is_written(client: TestClient, redis: Redis) -> None:  # type: ignore[type-arg]
    h = bearer(await ApiKeys(redis).create("gestion", "write"))
    resp = await client.put("/api/v1/records/members/M0000009/claims/C1", json={**CLAIM, "amount_eur": "trente",
                            "colour": "bleu"}, headers=h)  # fmt: skip
    body = await resp.json()
    assert resp.status == 400
    assert set(body["fields"]) == {"amount_eur", "colour", "version", "id", "member"}
    assert "montant illisible" in body["fields"]["amount_eur"]
    assert await redis.hlen(f"{keys.member('M0000009')}:claims") == 0


async def test_bulk_answers_each_line_and_stores_the_good_ones(client: TestClient, redis: Redis) -> None:  # type: ignore[type-arg]
    h = bearer(await ApiKeys(redis).create("gestion", "write"))
    lines: list[Any] = [{"kind": "members", "version": 1, "record": {**MEMBER, "number": "M0000002"}}]
    lines += [{"kind": "claims", "version": 1, "record": {**CLAIM, "id": f"C{i:07d}", "member": "M0000002"}}
              for i in range(300)]  # fmt: skip
    lines[51] = {"kind": "claims", "version": 1, "record": {**CLAIM, "id": "C0000050", "member": "M0000002",
                                                            "care_date": "31/02/2026"}}  # fmt: skip
    body = b"\n".join(orjson.dumps(x) for x in lines) + b"\n{not json\n"
    body += orjson.dumps({"kind": "claims", "version": 1, "record": {**CLAIM, "id": "C0999999", "member": "M7777777"}})
    resp = await client.post("/api/v1/records/bulk", data=body, headers={**h, "Content-Type": "application/x-ndjson"})
    assert resp.status == 200
    results = [orjson.loads(x) for x in (await resp.read()).splitlines()]
    assert len(results) == 303 and [r["line"] for r in results] == list(range(1, 304))
    assert results[51]["status"] == "invalid" and "care_date" in results[51]["errors"]
    assert results[301]["status"] == "invalid" and "ligne" in results[301]["errors"]
    assert results[302]["errors"] == {"member": "adhérent inconnu 'M7777777'"}
    assert sum(r["status"] == "stored" for r in results) == 300
    assert resp.headers["X-Records-Stored"] == "300"
    assert await redis.hlen(f"{keys.member('M0000002')}:claims") == 299
    # The same request again changes nothing.
    resp = await client.post("/api/v1/records/bulk", data=body, headers=h)
    again = [orjson.loads(x) for x in (await resp.read()).splitlines()]
    assert sum(r["status"] == "unchanged" for r in again) == 300 and not any(r["status"] == "stored" for r in again)
