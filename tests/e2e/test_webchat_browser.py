"""The web chat in real Chromium against ``run.py serve``: a member types, sees the answer,
reloads and finds the conversation once; a hostile reply is shown as text."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from playwright.async_api import async_playwright
from redis.asyncio import Redis

from gateway.envelope import Message
from gateway.responders import ACK_TEXT
from tests.e2e.browser import CHROMIUM_ARGS
from tests.e2e.product import Product

pytestmark = pytest.mark.browser


async def test_member_chats_reloads_and_sees_hostile_text_as_text(make_product: Callable[..., Product]) -> None:
    product = make_product()
    await product.start()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        dialogs: list[str] = []
        page.on("dialog", lambda d: dialogs.append(d.message))
        await page.goto(product.url + "/")
        await page.click(".mwc-toggle")
        await page.wait_for_selector(".mwc-root[data-connected=true]", timeout=15_000)
        await page.fill(".mwc-input", "Bonjour, où en est ma demande d'adhésion ?")
        await page.click(".mwc-send")
        await page.wait_for_selector(f".mwc-bot >> text={ACK_TEXT}", timeout=15_000)
        assert await page.locator(".mwc-member[data-state=sent]").count() == 1

        # A reply carrying markup (as an agent or the bot might quote a member) is shown as text.
        token = await page.evaluate("localStorage.getItem('mutuelle-webchat-token')")
        session_id = token.split(".")[0]
        hostile = '<img src=x onerror="alert(1)"><b>gras</b>'
        await _send_reply(product, session_id, hostile)
        await page.wait_for_selector(".mwc-bot >> text=onerror", timeout=15_000)
        assert await page.locator(".mwc-log img").count() == 0
        assert await page.locator(".mwc-log b").count() == 0

        # Reload: the whole conversation is back, nothing twice.
        await page.reload()
        await page.click(".mwc-toggle")
        await page.wait_for_selector(".mwc-bot >> text=onerror", timeout=15_000)
        assert await page.locator(".mwc-member").count() == 1
        assert await page.locator(f".mwc-bot >> text={ACK_TEXT}").count() == 1
        assert await page.locator(".mwc-bot >> text=onerror").count() == 1
        await asyncio.sleep(0)
        assert dialogs == [] and errors == []
        await browser.close()
    assert product.stop() == 0


async def _send_reply(product: Product, session_id: str, text: str) -> None:
    """What the dispatcher does for a reply on the web chat: the channel's own send."""
    from channels.webchat.channel import WebchatChannel

    port = (product.env_var_dir / "redis" / "redis.port").read_text().strip()
    redis = Redis.from_url(f"redis://127.0.0.1:{port}/0", decode_responses=True)
    from gateway.app import Gateway
    from gateway.settings import Settings

    settings = Settings.from_env({**product.env, "REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    gw = Gateway(settings, redis, roles=frozenset({"worker"}), channel_names=["webchat"])
    channel = gw.channels["webchat"]
    assert isinstance(channel, WebchatChannel)
    msg = Message(id="agent-1", channel="webchat", urn=f"webchat:{session_id}", direction="out", text=text)
    await channel.send(msg)
    await redis.aclose()
