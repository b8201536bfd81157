"""Telegram webhook parse table (real Bot API payload shapes), through the real gateway app."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from channels.telegram import split_text
from gateway import keys
from gateway.app import Gateway
from gateway.envelope import Message
from gateway.settings import Settings

CASES = json.loads((Path(__file__).parent / "cases.json").read_text())
SECRET = "case-secret"


@pytest.fixture
async def client(redis: Redis, settings_env: dict[str, str]) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    env = {**settings_env, "TELEGRAM_TOKEN": "123456:ABCDEF", "TELEGRAM_SECRET_TOKEN": SECRET}
    gateway = Gateway(Settings.from_env(env), redis, roles=frozenset({"web"}), channel_names=["telegram"])
    c: TestClient = TestClient(TestServer(gateway.build_app(), host="127.0.0.1"))  # type: ignore[type-arg]
    await c.start_server()
    yield c
    await c.close()


@pytest.mark.parametrize("case", CASES, ids=[c["label"] for c in CASES])
async def test_case(case: dict[str, Any], client: TestClient, redis: Redis) -> None:  # type: ignore[type-arg]
    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET}
    for name, value in (case.get("headers") or {}).items():
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    body = case["raw"] if "raw" in case else json.dumps(case["body"], ensure_ascii=False)
    chat = 3527065  # the private chat of most cases
    if isinstance(case.get("body"), dict) and isinstance(case["body"].get("message"), dict):
        chat = case["body"]["message"].get("chat", {}).get("id", chat)
    if case.get("opted_out_before"):  # the chat had blocked the bot
        await redis.sadd(keys.opt_out("telegram"), f"telegram:{chat}")
    resp = await client.post("/telegram/webhook", data=body.encode(), headers=headers)
    expected = case["expected"]
    assert resp.status == expected["status"]
    if expected["status"] >= 400:
        assert resp.content_type == "application/json" and (await resp.json())["detail"]
    stored = [Message.from_json(f["m"]) for _, f in await redis.xrange(keys.stream("in", 0))]
    if "opted_out" in expected:  # what the dispatcher reads before any send to that chat
        urns = {m.urn for m in stored} or {f"telegram:{chat}"}
        for urn in urns:
            assert await redis.sismember(keys.opt_out("telegram"), urn) == expected["opted_out"]
    if "messages" not in expected:
        assert stored == []
        return
    assert len(stored) == len(expected["messages"])
    for msg, want in zip(stored, expected["messages"], strict=True):
        assert msg.channel == "telegram"
        for field, value in want.items():
            if field == "attachments":
                assert len(msg.attachments) == value
            elif field == "attachment_ref":
                assert msg.attachments[0].ref == value
            elif field.startswith("meta."):
                found: Any = msg.meta
                for part in field.split(".")[1:]:
                    found = found[part]
                assert found == value, field
            else:
                assert getattr(msg, field) == value, field


async def test_redelivered_update_is_stored_once(client: TestClient, redis: Redis) -> None:  # type: ignore[type-arg]
    body = json.dumps(CASES[0]["body"]).encode()
    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET}
    for _ in range(3):
        assert (await client.post("/telegram/webhook", data=body, headers=headers)).status == 200
    assert await redis.xlen(keys.stream("in", 0)) == 1


def test_long_texts_are_split_at_word_ends() -> None:
    text = ("mot " * 2000).strip()
    parts = split_text(text)
    assert len(parts) == 2 and all(len(p) <= 4096 for p in parts)
    assert " ".join(parts) == text
    assert split_text("court") == ["court"]
