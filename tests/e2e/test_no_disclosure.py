"""Nothing personal and no secret where it should not be, against ``run.py serve`` logging at DEBUG with
the bot it starts itself: members write canary values on every channel (texts, names, a subject, a
callback comment, and to the bot the shapes Rasa quotes in its own logs: ``/intent{...}`` with entities,
entities and intents the domain does not know, member numbers, phone numbers), providers fail (Telegram
500s, an SMTP relay that refuses connections, Twilio 503s), forged and broken requests come in; then the
product's log, the Rasa server's and the action server's logs (``var/rasa.log``, ``var/actions.log``),
``/metrics`` and every error answer are searched for the canaries and for the configured secrets (auth
tokens, the bot token, webhook secret, relay password, key)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from email.message import EmailMessage

import aiohttp
import aiosmtplib

from tests.e2e.conftest import AUTH_TOKEN, TELEGRAM_SECRET, TELEGRAM_TOKEN
from tests.e2e.product import Product, free_port
from tests.e2e.test_sms_e2e import post_sms
from tests.fakes.telegram import FakeTelegram, as_body, update
from tests.fakes.twilio import FakeTwilio, inbound_params, signed_inbound

RELAY_PASSWORD = "Relais-Mot-De-Passe-8841"
SECRET_KEY = "cle-secrete-canari-5521-aaaaaaaaaaaaaaaa"
CANARIES = ("CANARI-SMS-1101", "CANARI-TG-2202", "Hippolyte-Canari", "CANARI-MAIL-3303", "Objet-Canari-4404",
            "Clotilde-Canari", "CANARI-WEB-5505", "CANARI-RAPPEL-6606", "CANARI-FORGE-7707", "MotDePasse-Canari-8808",
            "199005577", "canari.adherent")  # fmt: skip
# Typed to the bot in the shapes Rasa 3.6 writes whole into its warnings (and, at DEBUG, everywhere).
RASA_CANARIES = ("CANARI-ENT-9901", "CANARI-NUM-9902", "CANARI_INTENT_9903", "CANARI_CLE_9904", "CANARI-VAL-9905",
                 "M0199977", "0699004421", "06 99 00 44 21", "CANARI-DATE-9906", "CANARI-PHRASE-9907")  # fmt: skip
HOSTILE = (
    '/greet{"x":"CANARI-ENT-9901"}',
    '/give_identity{"member_number":"CANARI-NUM-9902","phone_number":"06 99 00 44 21"}',
    '/CANARI_INTENT_9903{"CANARI_CLE_9904":"CANARI-VAL-9905"}',
    '/inform{"member":"M0199977"}',
    "/greet{CANARI-DATE-9906",
    '/affirm{"identity_answer":"M0199977"}',
    "M0199977",
    "mon numéro est le 06 99 00 44 21, rappelez-moi CANARI-PHRASE-9907",
)


async def say_to_bot(ws: aiohttp.ClientWebSocketResponse, n: int, text: str) -> None:
    """One web-chat message; returns once the bot's answer came (the Rasa server has handled it)."""
    await ws.send_json({"type": "message", "client_id": f"canari-h{n:03d}", "text": text})
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        frame = await ws.receive_json(timeout=max(0.1, deadline - time.monotonic()))
        if frame.get("type") == "message":
            return
    raise AssertionError(f"no answer to hostile message {n}")


async def test_no_member_words_or_secrets_in_logs_metrics_or_error_answers(
    make_product: Callable[..., Product], fake_twilio: FakeTwilio, fake_telegram: FakeTelegram
) -> None:
    product = make_product(
        RESPONDER="rasa",  # no RASA_URL: serve starts the Rasa server and the action server, logging under VAR_DIR
        LOG_LEVEL="DEBUG",
        SECRET_KEY=SECRET_KEY,
        SMTP_URL=f"smtp://relais:{RELAY_PASSWORD}@127.0.0.1:{free_port()}",  # nobody listens: every send fails
        SEND_MAX_ATTEMPTS="2",
    )
    await product.start(timeout=400)
    fake_telegram.inject(2, status=500)
    fake_twilio.inject(2, status=503)
    answers: list[str] = []
    async with aiohttp.ClientSession() as http:
        assert (await post_sms(http, product, "+33199005577", "CANARI-SMS-1101 mon remboursement"))[0] == 200
        # A forged SMS (wrong signature) and a Telegram update without the secret.
        forged = inbound_params("+33199005578", "CANARI-FORGE-7707")
        headers, body = signed_inbound(product.url, "/sms/twilio/inbound", "not-the-token", forged)
        async with http.post(product.url + "/sms/twilio/inbound", data=body, headers=headers) as resp:
            assert resp.status == 403
            answers.append(await resp.text())
        tg = as_body(update(90001, 5550001, "CANARI-TG-2202 ma carte", first_name="Hippolyte-Canari"))
        for secret in (TELEGRAM_SECRET, "faux-secret"):
            async with http.post(
                f"{product.url}/telegram/webhook",
                data=tg,
                headers={"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": secret},
            ) as resp:
                answers.append(await resp.text())
        # Web chat.
        origin = {"Origin": product.url}
        async with http.post(f"{product.url}/webchat/session", headers=origin) as resp:
            token = (await resp.json())["token"]
        async with http.ws_connect(f"{product.url}/webchat/ws?token={token}", headers=origin) as ws:
            await say_to_bot(ws, 0, "CANARI-WEB-5505 bonjour")
            for n, text in enumerate(HOSTILE, 1):
                await say_to_bot(ws, n, text)
        # The same by SMS, from a number no member has.
        for text in HOSTILE[:4]:
            assert (await post_sms(http, product, "+33199005577", text))[0] == 200
        # A callback request, and one refused (its answer may quote the member's own input, not a secret).
        payload = {"phone": "01 99 00 55 77", "date": "2099-01-05", "slot": "14:00-18:00", "reason": "remboursement",
                   "comment": "CANARI-RAPPEL-6606"}  # fmt: skip
        async with http.post(f"{product.url}/api/callbacks", json=payload) as resp:
            answers.append(await resp.text())
        # A failed console login, and paths that do not exist.
        async with http.post(
            f"{product.url}/console/login",
            data={"login": "Clotilde-Canari", "password": "MotDePasse-Canari-8808"},
            headers=origin,
        ) as resp:
            answers.append(await resp.text())
        for path in ("/console/api/conversations/CANARI-SMS-1101", "/CANARI-MAIL-3303", "/desabonnement/CANARI"):
            async with http.get(product.url + path) as resp:
                assert resp.status < 500
                answers.append(await resp.text())
    mail = EmailMessage()
    mail["From"] = "Clotilde-Canari <canari.adherent@example.fr>"
    mail["To"] = "contact@mutuelle.example"
    mail["Subject"] = "Objet-Canari-4404"
    mail["Message-ID"] = "<canari-2@example.fr>"
    mail.set_content("CANARI-MAIL-3303 bonjour")
    await aiosmtplib.send(mail, hostname="127.0.0.1", port=product.smtp_port)

    # Sends fail and are retried, then recorded failed; give them the time to.
    for _ in range(300):
        if len(fake_twilio.requests) >= 2 and fake_telegram.requests >= 2:
            break
        await asyncio.sleep(0.1)
    assert len(fake_twilio.requests) >= 2 and fake_telegram.requests >= 2
    await asyncio.sleep(3)
    async with aiohttp.ClientSession() as http, http.get(f"{product.url}/metrics") as resp:
        metrics = await resp.text()
    assert product.stop() == 0
    logged = product.log_path.read_text(encoding="utf-8", errors="replace")
    var_dir = product.env_var_dir
    rasa_logged = (var_dir / "rasa.log").read_text(encoding="utf-8", errors="replace")
    actions_logged = (var_dir / "actions.log").read_text(encoding="utf-8", errors="replace")
    assert "Rasa server is up and running" in rasa_logged or "Starting Rasa server" in rasa_logged, rasa_logged[-2000:]
    assert "Action endpoint is up and running" in actions_logged, actions_logged[-2000:]
    # Rasa did log about the hostile messages (its warnings), without what they said; never at DEBUG.
    assert "message withheld" in rasa_logged, rasa_logged[-3000:]
    assert " DEBUG " not in rasa_logged and " DEBUG " not in actions_logged
    for name, text in (("rasa.log", rasa_logged), ("actions.log", actions_logged)):
        found = [c for c in (*CANARIES, *RASA_CANARIES) if c in text]
        assert found == [], (name, found, text[-3000:])
        assert [s for s in (AUTH_TOKEN, TELEGRAM_TOKEN, SECRET_KEY) if s in text] == []
    assert [c for c in RASA_CANARIES if c in logged] == []
    assert '"level": "debug"' in logged  # the log did run at DEBUG
    secrets = (
        AUTH_TOKEN,
        TELEGRAM_TOKEN,
        TELEGRAM_TOKEN.partition(":")[2],
        TELEGRAM_SECRET,
        RELAY_PASSWORD,
        SECRET_KEY,
    )
    assert [c for c in CANARIES if c in logged] == []
    assert [s for s in secrets if s in logged] == []
    assert [c for c in CANARIES if c in metrics] == [] and [s for s in secrets if s in metrics] == []
    assert [s for s in secrets for a in answers if s in a] == []
    assert "Traceback" not in logged
