"""« Ne plus reconnaître » over HTTP, as the console page posts it: a signed-in agent, CSRF checked like the
other desk actions, the Telegram chat the member had linked a stranger's again."""

from __future__ import annotations

import re
import time

import aiohttp
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from bot.actions import state as bot_state
from gateway import keys
from gateway.contacts import register_member
from gateway.settings import Settings
from members import links
from members.records import Member, MemberStore
from server.product import Product
from staff.users import Users
from tests.e2e.product import free_port

PASSWORD = "une-phrase-de-passe-solide"


async def test_an_agent_undoes_the_link_from_the_console_with_the_csrf_token(
    redis: Redis, settings_env: dict[str, str]
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = Settings.from_env({**settings_env, "PUBLIC_URL": base})
    gw = Product(settings, redis, roles=frozenset({"web", "router"}), channel_names=["email"])
    server = TestServer(gw.build_app(), host="127.0.0.1", port=port)
    await server.start_server()
    try:
        await Users(redis).create("julie", PASSWORD, first_name="Julie", role="agent", skills=["benefits"])
        store = MemberStore(redis)
        async with redis.pipeline(transaction=False) as pipe:
            store.write(pipe, Member("M0000042", "Camille", "Durand", "1975-03-12", "+33600000001",
                                     "camille@example.fr", "confort", "Bretagne", "famille", "64.20", "2027-01-05"))  # fmt: skip
            await pipe.execute()
        await register_member(redis, "M0000042", phone="+33600000001", email="camille@example.fr")
        # Camille's Telegram chat, linked with her consent, and a conversation of hers waiting for an agent.
        chat, conv = "c-tg", "conv-tg"
        await redis.hset(keys.contact(chat), mapping={"id": chat})
        await links.link(redis, "M0000042", chat, channel="telegram", address="telegram:5550042", conv_id=conv)
        await redis.hset(keys.conversation(conv), mapping={"id": conv, "channel": "telegram", "contact_id": chat,
                                                          "member_id": "M0000042", "created_ms": str(int(time.time() * 1000))})  # fmt: skip
        await bot_state.handoff(redis, conv, reason="ask_human", intent="card_status", member="M0000042",
                                summary="Demandes : carte.")  # fmt: skip
        async with aiohttp.ClientSession(headers={"Origin": base}, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.post(f"{base}/console/login", data={"login": "julie", "password": PASSWORD}) as resp:
                assert resp.status == 200
                found = re.search(r'name="csrf-token" content="([^"]+)"', await resp.text())
            assert found is not None
            csrf = {"X-CSRF-Token": found.group(1)}
            async with http.get(f"{base}/console/api/conversations/{conv}") as resp:
                assert resp.status == 200
                shown = (await resp.json())["member"]["linked_accounts"]
            assert [(a["contact"], a["channel"]) for a in shown] == [(chat, "telegram")]
            url = f"{base}/console/api/conversations/{conv}/unlink"
            async with http.post(url, json={"contact": chat}) as resp:
                assert resp.status == 403  # no CSRF token: refused, nothing undone
            assert await links.linked_member(redis, chat) == "M0000042"
            async with http.post(url, json={"contact": chat}, headers=csrf) as resp:
                assert resp.status == 200 and (await resp.json())["linked_accounts"] == []
            assert await links.linked_member(redis, chat) is None
            async with http.post(url, json={"contact": chat}, headers=csrf) as resp:
                assert resp.status == 404 and "pas relié" in (await resp.json())["detail"]
        trail = [(e["what"], e["agent"]) for _, e in await redis.xrange(keys.member_audit("M0000042"))]
        assert ("account_unlinked", "julie") in trail
    finally:
        await server.close()
