"""Telegram, e-mail, web chat and callback end to end against ``run.py serve``."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from email.message import EmailMessage

import aiohttp
import aiosmtplib

from gateway.hours import holiday_name
from gateway.responders import ACK_TEXT, callback_text
from tests.e2e.conftest import TELEGRAM_SECRET
from tests.e2e.product import Product
from tests.fakes.smtp import SmtpSink
from tests.fakes.telegram import FakeTelegram, as_body, update


async def test_telegram_update_in_send_message_out_once(
    make_product: Callable[..., Product], fake_telegram: FakeTelegram
) -> None:
    product = make_product()
    await product.start()
    body = as_body(update(900001, 3527065, "Bonjour, ma carte de tiers payant n'est pas arrivée"))
    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}
    async with aiohttp.ClientSession() as session:
        for _ in range(3):  # Telegram redelivers until it gets a 200
            async with session.post(f"{product.url}/telegram/webhook", data=body, headers=headers) as resp:
                assert resp.status == 200
        async with session.post(
            f"{product.url}/telegram/webhook", data=body, headers={**headers, "X-Telegram-Bot-Api-Secret-Token": "x"}
        ) as resp:
            assert resp.status == 403
        async with session.post(f"{product.url}/telegram/webhook", data=b"{not json", headers=headers) as resp:
            assert resp.status == 400
    [sent] = await fake_telegram.wait_for(1, timeout=15)
    assert (sent.chat_id, sent.text) == ("3527065", ACK_TEXT)
    assert product.stop() == 0  # drains everything in hand before exiting
    assert len(fake_telegram.sent) == 1


async def test_email_in_threaded_reply_out(make_product: Callable[..., Product], smtp_sink: SmtpSink) -> None:
    product = make_product()
    await product.start()
    mail = EmailMessage()
    mail["From"] = "Jeanne Martin <jeanne.martin@example.fr>"
    mail["To"] = "contact@mutuelle.example"
    mail["Subject"] = "Remboursement lunettes"
    mail["Message-ID"] = "<CAF1234@mail.example.fr>"
    mail.set_content("Bonjour,\nOù en est le remboursement de mes lunettes ?\nJeanne")
    for _ in range(2):  # the relay delivers twice
        await aiosmtplib.send(mail, hostname="127.0.0.1", port=product.smtp_port)
    [got] = await smtp_sink.wait_for(1, timeout=15)
    reply = got.message
    assert got.rcpt_tos == ["jeanne.martin@example.fr"]
    assert reply["Subject"] == "Re: Remboursement lunettes"
    assert reply["In-Reply-To"] == "<CAF1234@mail.example.fr>"
    assert "<CAF1234@mail.example.fr>" in reply["References"]
    assert reply["Auto-Submitted"] == "auto-replied"
    plain = reply.get_body(preferencelist=("plain",))
    html = reply.get_body(preferencelist=("html",))
    assert plain is not None and ACK_TEXT in plain.get_content()
    assert html is not None and "<p" in html.get_content()
    # The member answers our reply: same conversation, answered in the same thread.
    answer = EmailMessage()
    answer["From"] = "jeanne.martin@example.fr"
    answer["To"] = "contact@mutuelle.example"
    answer["Subject"] = "Re: Re: Remboursement lunettes"
    answer["Message-ID"] = "<CAF5678@mail.example.fr>"
    answer["In-Reply-To"] = reply["Message-ID"]
    answer["References"] = f"<CAF1234@mail.example.fr> {reply['Message-ID']}"
    answer.set_content("Merci !\n\n> ancien message cité")
    await aiosmtplib.send(answer, hostname="127.0.0.1", port=product.smtp_port)
    second = (await smtp_sink.wait_for(2, timeout=15))[1].message
    assert second["Subject"] == "Re: Remboursement lunettes"
    assert reply["Message-ID"] in second["References"]
    # An out-of-office answer is stored but never answered (no mail loop).
    ooo = EmailMessage()
    ooo["From"] = "jeanne.martin@example.fr"
    ooo["To"] = "contact@mutuelle.example"
    ooo["Subject"] = "Réponse automatique : absent du bureau"
    ooo["Auto-Submitted"] = "auto-replied"
    ooo["Message-ID"] = "<ooo1@mail.example.fr>"
    ooo.set_content("Je suis absente jusqu'au 3 janvier.")
    await aiosmtplib.send(ooo, hostname="127.0.0.1", port=product.smtp_port)
    assert product.stop() == 0  # drains: the out-of-office was handled before exit
    assert len(smtp_sink.received) == 2


async def test_callback_request_through_the_api_is_confirmed(
    make_product: Callable[..., Product], fake_twilio: object
) -> None:
    product = make_product()
    await product.start()
    day = dt.date.today() + dt.timedelta(days=1)
    while day.weekday() >= 5 or holiday_name(day):  # the callback form refuses public holidays
        day += dt.timedelta(days=1)
    payload = {"phone": "06 12 34 56 78", "date": day.isoformat(), "slot": "14:00-18:00", "reason": "remboursement"}
    async with aiohttp.ClientSession() as session:
        answers = []
        for _ in range(2):  # a double submit
            async with session.post(
                f"{product.url}/api/callbacks", json=payload, headers={"Idempotency-Key": "form-abc-123"}
            ) as resp:
                answers.append((resp.status, await resp.json()))
        async with session.post(f"{product.url}/api/callbacks", json={**payload, "phone": "+1 202 555 0123"}) as resp:
            bad = (resp.status, await resp.json())
        async with session.post(f"{product.url}/api/callbacks", data=b"[1,2") as resp:
            assert resp.status == 400
    assert answers[0][0] == answers[1][0] == 201
    assert answers[0][1]["id"] == answers[1][1]["id"]
    assert answers[0][1]["phone"] == "+33612345678"
    assert bad[0] == 400 and bad[1]["error"]["fields"][0]["field"] == "phone"
    # With SMS enabled, the member is also confirmed by SMS, once.
    [sms] = await fake_twilio.wait_for(1, timeout=15)  # type: ignore[attr-defined]
    reference = answers[0][1]["reference"]  # the short reference a person reads over the phone
    assert answers[1][1]["reference"] == reference and reference.startswith("RAP-")
    assert (sms.to, sms.body) == ("+33612345678", callback_text({**answers[0][1], "reference": reference}))
    assert sms.body.startswith(f"Votre demande de rappel {reference} est bien enregistrée.")
    assert product.stop() == 0


async def test_pages_have_a_strict_content_security_policy(make_product: Callable[..., Product]) -> None:
    product = make_product()
    await product.start()
    async with aiohttp.ClientSession() as session:
        for path in ("/", "/callback"):
            async with session.get(product.url + path) as resp:
                assert resp.status == 200
                csp = resp.headers["Content-Security-Policy"]
                assert "default-src 'none'" in csp and "unsafe-inline" not in csp
        async with session.get(product.url + "/metrics") as resp:
            assert "gateway_inbound_accepted_total" in await resp.text()
        async with session.post(product.url + "/sms/twilio/inbound", data=b"x" * (300 * 1024)) as resp:
            assert resp.status in (403, 413)
    assert product.stop() == 0


async def test_ctrl_c_with_a_web_chat_open_stops_promptly(make_product: Callable[..., Product]) -> None:
    """An open chat socket is closed (1001) at shutdown instead of holding the stop for seconds."""
    import time

    product = make_product()
    await product.start()
    origin = product.url
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{origin}/webchat/session", headers={"Origin": origin}) as resp:
            token = (await resp.json())["token"]
        async with session.ws_connect(f"{origin}/webchat/ws?token={token}", headers={"Origin": origin}) as ws:
            closing = asyncio.create_task(ws.receive(timeout=30))  # as a browser, answers the close at once
            started = time.monotonic()
            code = await asyncio.to_thread(product.stop)
            elapsed = time.monotonic() - started
            closed = await closing
    assert code == 0 and elapsed < 5, elapsed
    assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
