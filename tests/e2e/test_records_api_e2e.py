"""The records API through ``run.py serve``: a back office with a key made by ``run.py apikey`` upserts
10,000 claims in bulk, an older version is refused, a bad line is reported with its field while the
others are stored, and a revoked key is refused."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from tests.e2e.product import ROOT, Product


def apikey(product: Product, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "run.py"), "apikey", *args], env=product.env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def claim(i: int, **fields: Any) -> dict[str, Any]:
    return {"id": f"BC{i:08d}", "member": f"M{100000 + i % 500:07d}", "care_date": "2026-11-02", "kind": "pharmacie",
            "amount_eur": "30,00", "reimbursed_eur": "", "status": "in_progress", "payment_date": "",
            "teletransmitted": True, **fields}  # fmt: skip


async def test_back_office_upserts_ten_thousand_claims_and_a_revoked_key_is_refused(
    make_product: Callable[..., Product],
) -> None:
    product = make_product(API_BURST="100")
    await product.start(timeout=120)
    made = await asyncio.to_thread(apikey, product, "create", "gestion", "--scope", "write")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("mgw_") and "ne sera plus jamais affichée" in made.stdout
    h = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
    lines = [orjson.dumps({"kind": "claims", "version": 1, "record": claim(i)}) for i in range(10_000)]
    lines[4321] = orjson.dumps({"kind": "claims", "version": 1, "record": claim(4321, amount_eur="douze")})
    bulk = f"{product.url}/api/v1/records/bulk"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as http:
        async with http.post(bulk, data=b"\n".join(lines), headers=h) as resp:
            assert resp.status == 200
            results = [orjson.loads(x) for x in (await resp.read()).splitlines()]
        assert len(results) == 10_000
        assert sum(r["status"] == "stored" for r in results) == 9_999
        bad = results[4321]
        assert bad["line"] == 4322 and bad["status"] == "invalid" and "montant illisible" in bad["errors"]["amount_eur"]
        # What the bot answers from: this member's claim, as sent.
        url = f"{product.url}/api/v1/records/members/M0100007/claims/BC00000007"
        async with http.get(url, headers=h) as resp:
            got = await resp.json()
            assert resp.status == 200 and (got["amount_eur"], got["version"]) == ("30.00", 1)
        paid = claim(7, status="paid", reimbursed_eur="21,00", payment_date="2026-11-20")
        async with http.put(url, json={**paid, "version": 3}, headers=h) as resp:
            assert resp.status == 200
        async with http.put(url, json={**claim(7), "version": 2}, headers=h) as resp:  # an older update, late
            assert resp.status == 409 and (await resp.json())["current_version"] == 3
        async with http.get(url, headers=h) as resp:
            assert (await resp.json())["status"] == "paid"
        revoked = await asyncio.to_thread(apikey, product, "revoke", "gestion")
        assert revoked.returncode == 0, revoked.stderr
        async with http.get(url, headers=h) as resp:
            assert resp.status == 401 and (await resp.json())["detail"] == "Clé d'API révoquée. / API key revoked."
        listed = await asyncio.to_thread(apikey, product, "list")
        assert "gestion\twrite" in listed.stdout and "révoquée" in listed.stdout and token not in listed.stdout
