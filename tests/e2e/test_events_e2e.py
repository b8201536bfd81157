"""Events out through ``run.py serve``: a complaint filed by the bot's action reaches a loopback back-office
receiver once, signed (HMAC-SHA256 over "<timestamp>.<body>"), and again after the receiver failed twice;
a receiver that never accepts ends in the supervisors' list (seen in Chromium, axe-core clean); the same events
are in the Redis stream."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import async_playwright
from redis.asyncio import Redis

from bot.actions import state
from gateway import keys
from gateway.webhooks import dead_letters
from members.records import Member, MemberStore
from tests.e2e.accessibility import assert_accessible
from tests.e2e.browser import CHROMIUM_ARGS
from tests.e2e.product import Product
from tests.e2e.test_console_browser import PASSWORD, create_user

SECRET = "back-office-shared-secret-0001"
LEA = Member("M0200001", "Léa", "Martin", "1980-02-14", "+33612345001", "", "confort", "Normandie", "famille",
             "61.20", "2027-01-05")  # fmt: skip


@dataclass
class Receiver:
    """The back office's webhook endpoint, as the README shows it: verify, then de-duplicate."""

    fail: dict[str, int] = field(default_factory=dict)  # event type or reference -> refusals left (-1: always)
    calls: list[dict[str, Any]] = field(default_factory=list)  # every request, with what it answered
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)  # event id -> event, once

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        ts = request.headers.get("X-Webhook-Timestamp", "")
        expected = "v1=" + hmac.new(SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        signed = hmac.compare_digest(expected, request.headers.get("X-Webhook-Signature", ""))
        fresh = ts.isdigit() and abs(time.time() - int(ts)) < 300
        event = json.loads(body)
        ref = str(event["data"].get("reference", ""))
        left = self.fail.get(ref, 0)
        status = 401 if not (signed and fresh) else 500 if left else 200
        if left > 0:
            self.fail[ref] = left - 1
        self.calls.append({"id": event["id"], "header_id": request.headers.get("X-Webhook-Id"), "status": status,
                           "event": event, "signed": signed})  # fmt: skip
        if status == 200:
            self.accepted.setdefault(event["id"], event)
        return web.Response(status=status)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hooks/mutuelle", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield rec, f"http://127.0.0.1:{port}/hooks/mutuelle"
    await runner.cleanup()


async def until(check: Callable[[], Any], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_a_complaint_filed_reaches_the_back_office_once_signed_and_again_after_two_failures(
    make_product: Callable[..., Product], redis_url: str, redis: Redis, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    product = make_product(REDIS_URL=redis_url, WEBHOOK_URLS=url, WEBHOOK_SECRET=SECRET, WEBHOOK_BACKOFF_BASE_S="0.2",
                           WEBHOOK_BACKOFF_MAX_S="1", WEBHOOK_MAX_ATTEMPTS="3")  # fmt: skip
    await product.start(timeout=120)
    async with redis.pipeline(transaction=False) as pipe:
        MemberStore(redis).write(pipe, LEA)
        await pipe.execute()
    today = dt.date(2026, 12, 7)
    # The bot's action files the complaint (the same code the action server runs).
    first = await state.file_complaint(redis, "conv-1", "turn-1", LEA.number, "Remboursement oublié", False, today)
    await until(lambda: rec.accepted)
    [event] = rec.accepted.values()
    assert event["type"] == "complaint.filed"
    assert event["data"] == {"reference": first.id, "member": LEA.number, "received_date": "2026-12-07",
                             "due_date": "2026-12-17", "urgent": False, "conversation": "conv-1"}  # fmt: skip
    assert "Remboursement" not in json.dumps(event)  # the member's words stay here
    # A retried action (same turn) gets the same reference and tells nobody twice.
    again = await state.file_complaint(redis, "conv-1", "turn-1", LEA.number, "Remboursement oublié", False, today)
    assert again.id == first.id
    # The next one: the receiver refuses it twice, then takes it.
    second_ref = f"REC-2026-B{int(await redis.get(keys.COMPLAINT_SEQ)) + 1:06d}"
    rec.fail[second_ref] = 2
    second = await state.file_complaint(redis, "conv-2", "turn-1", LEA.number, "Devis dentaire", True, today)
    assert second.id == second_ref
    await until(lambda: len(rec.accepted) == 2)
    tries = [c for c in rec.calls if c["event"]["data"]["reference"] == second.id]
    assert [c["status"] for c in tries] == [500, 500, 200]
    assert len({c["id"] for c in tries}) == 1 and all(c["header_id"] == c["id"] and c["signed"] for c in tries)
    assert rec.accepted[tries[0]["id"]]["data"]["due_date"] == "2026-12-10"  # urgent: 3 days
    # Nothing left to deliver, and the first one went once.
    await until(lambda: _empty(redis))
    assert sum(1 for c in rec.calls if c["event"]["data"]["reference"] == first.id) == 1
    # Consumers inside the network read the same events from the stream.
    stream = await redis.xrange(keys.EVENTS_STREAM)
    assert [(f["type"], json.loads(f["data"])["reference"]) for _, f in stream] == [
        ("complaint.filed", first.id), ("complaint.filed", second.id)]  # fmt: skip
    # A receiver that never accepts: after WEBHOOK_MAX_ATTEMPTS the event is set aside for supervisors.
    third_ref = f"REC-2026-B{int(await redis.get(keys.COMPLAINT_SEQ)) + 1:06d}"
    rec.fail[third_ref] = -1
    third = await state.file_complaint(redis, "conv-3", "turn-1", LEA.number, "Carte", False, today)

    async def set_aside() -> bool:
        return bool((await dead_letters(redis))["count"])

    await until(set_aside)
    [dead] = (await dead_letters(redis))["items"]
    assert dead["type"] == "complaint.filed" and dead["attempts"] == 3 and dead["error"] == "HTTP 500"
    assert dead["url"] == url and all(e["data"]["reference"] != third.id for e in rec.accepted.values())
    assert sum(1 for c in rec.calls if c["event"]["data"]["reference"] == third.id) == 3
    # The supervisor sees it on their page, with the event's id and the error.
    await create_user(redis_url, "sophie", "Sophie", "--role", "supervisor")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = await (await browser.new_context()).new_page()
        await page.goto(product.url + "/console/login")
        await page.fill("input[name=login]", "sophie")
        await page.fill("input[name=password]", PASSWORD)
        await page.keyboard.press("Enter")
        row = page.locator("#webhook-dead tbody tr").first
        await row.locator(f"text={dead['event_id']}").wait_for(timeout=15_000)
        assert "HTTP 500" in await row.inner_text() and "complaint.filed" in await row.inner_text()
        assert (await page.locator("#webhook-dead-count").inner_text()) == "(1)"
        await assert_accessible(page, "supervisor page with an event set aside")
        await browser.close()


async def _empty(redis: Redis) -> bool:
    return int(await redis.zcard(keys.EVENTS_DELIVERIES)) == 0
