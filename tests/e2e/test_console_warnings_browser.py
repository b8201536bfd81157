"""What the agents' console warns about, in real Chromium against ``run.py serve`` (acknowledging
responder, loopback providers): a mail under Camille's address whose DMARC failed reaches the queue
flagged « expéditeur non vérifié » and opens with the warning and no member record; an agent's
WhatsApp reply to a member who has not written for more than 24 hours, with no « reprise de contact »
template configured, is not lost silently: the console says under it that it did not go, and why.
Both page states pass axe-core."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage

import aiohttp
import aiosmtplib
import pytest
from playwright.async_api import Browser
from redis.asyncio import Redis

from bot.actions import state as bot_state
from gateway import keys
from tests.e2e.accessibility import assert_accessible
from tests.e2e.bot_data import CAMILLE, seed
from tests.e2e.browser import chromium
from tests.e2e.product import AUTH_TOKEN, OUR_NUMBER, Product
from tests.e2e.test_console_browser import create_user, log_in
from tests.e2e.test_email_spoofing import FAIL, MX
from tests.e2e.test_whatsapp_e2e import until
from tests.fakes.twilio import FakeTwilio, signed_inbound

pytestmark = pytest.mark.browser


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


@pytest.fixture
async def product(make_product: Callable[..., Product], redis: Redis, redis_url: str) -> AsyncIterator[Product]:
    await seed(redis)
    product = make_product(REDIS_URL=redis_url, EMAIL_AUTHSERV_ID=MX, TWILIO_WHATSAPP_FROM=OUR_NUMBER)
    await product.start()
    yield product
    assert product.stop() == 0


async def test_unproven_sender_and_a_whatsapp_reply_outside_the_window_are_shown_to_the_agent(
    product: Product,
    browser: Browser,
    fake_twilio: FakeTwilio,
    redis: Redis,
    redis_url: str,
) -> None:
    await create_user(redis_url, "julie", "Julie", "--skills", "benefits,complaints")
    julie = await log_in(browser, product, "julie")

    # A mail claiming Camille's address, DMARC failing at the MX: queued, flagged, nothing answered.
    mail = EmailMessage()
    mail["Authentication-Results"] = FAIL
    mail["From"] = f"Camille Durand <{CAMILLE.email}>"
    mail["To"] = "contact@mutuelle.example"
    mail["Subject"] = "Changement de RIB"
    mail["Message-ID"] = "<forged1@forger.example>"
    mail.set_content("Bonjour, voici mon nouveau RIB, merci de me confirmer ma date de naissance.")
    await aiosmtplib.send(mail, sender="bulk@forger.example", recipients=["contact@mutuelle.example"],
                          hostname="127.0.0.1", port=product.smtp_port)  # fmt: skip
    item = julie.locator("#queue li", has_text="expéditeur non vérifié")
    await item.wait_for(timeout=20_000)
    await item.locator("button.take").click()
    warning = julie.locator("#conv-unproven")
    await warning.wait_for(timeout=15_000)
    said = await warning.inner_text()
    assert said.startswith("Expéditeur non vérifié") and "DMARC" in said and "usurpée" in said
    assert "Adhérent non identifié" in await julie.inner_text("#fiche")  # nothing of Camille's beside it
    assert "nouveau RIB" in await julie.inner_text("#messages")  # the mail itself, kept for the agent
    await assert_accessible(julie, "conversation from an unproven sender")

    # Camille on WhatsApp (answered by the acknowledging responder), handed to the agents.
    urn = "whatsapp:" + CAMILLE.phone
    async with aiohttp.ClientSession() as session:
        params = fake_twilio.whatsapp_inbound(CAMILLE.phone, "Bonjour", to=OUR_NUMBER, profile_name="Camille")
        headers, body = signed_inbound(product.url, "/whatsapp/twilio/inbound", AUTH_TOKEN, params)
        async with session.post(product.url + "/whatsapp/twilio/inbound", data=body, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
    await until(lambda: any(m.to == urn for m in fake_twilio.messages), "the acknowledgement on WhatsApp")
    contact = await redis.get(keys.address(urn))
    conv = str(await redis.get(keys.open_conversation(contact, "whatsapp")))
    await bot_state.handoff(redis, conv, reason="ask_human", intent="", member=None, summary="Demande un conseiller.")
    item = julie.locator(f"#queue li[data-id='{conv}']")
    await item.wait_for(timeout=15_000)
    await item.locator("button.take").click()
    # The pane has moved to the WhatsApp conversation (the mail's, taken before, also holds Julie's greeting).
    await julie.wait_for_selector("#conv-title >> text=WhatsApp", timeout=15_000)
    await julie.wait_for_selector("#messages >> text=je suis Julie", timeout=15_000)
    await until(lambda: any(m.to == urn and "Julie" in m.body for m in fake_twilio.messages), "Julie's greeting")
    # More than 24 hours pass without a word from Camille: WhatsApp takes only templates now.
    await redis.delete(keys.whatsapp_window(urn))
    sent_before = len(fake_twilio.messages)
    # A live refresh may rebuild the reply box while the text is typed: the draft is what is sent.
    await julie.fill("#reply-text", "Bonjour Camille, votre dossier est complet.")
    async with julie.expect_response(lambda r: r.url.endswith("/reply"), timeout=20_000):
        await julie.click("#send")
    await julie.wait_for_selector("#messages >> text=votre dossier est complet", timeout=15_000)
    error = julie.locator("#messages li", has_text="votre dossier est complet").locator(".delivery-error")
    await error.wait_for(timeout=20_000)  # shown live: no reload
    said = await error.inner_text()
    assert said.startswith("Non envoyé") and "plus de 24 h" in said and "autre canal" in said
    assert len(fake_twilio.messages) == sent_before  # nothing went to Twilio
    await assert_accessible(julie, "agent's WhatsApp reply refused outside the window")
    assert julie.errors == []  # type: ignore[attr-defined]
