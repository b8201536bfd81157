"""Outbound mail to the relay over a small pool of kept-open SMTP connections (aiosmtplib).

Opening a connection (TCP, EHLO, STARTTLS, AUTH) costs more than sending one message; a
campaign sends thousands, so connections are reused. A connection the relay closed while idle
is replaced and the message sent once more on the new one (e-mail is at-least-once with the
same Message-ID). Errors map to the gateway's send errors: 5xx refusals are permanent, the rest
is retried by the dispatcher.
"""

from __future__ import annotations

import asyncio
import contextlib
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

import aiosmtplib

from gateway.envelope import AmbiguousSend, PermanentFailure, ProviderUnavailable


class SmtpPool:
    def __init__(self, url: str, *, timeout_s: float, size: int = 8) -> None:
        parts = urlsplit(url)
        self.implicit_tls = parts.scheme == "smtps"
        self.hostname = parts.hostname or "127.0.0.1"
        self.port = parts.port or (465 if self.implicit_tls else 25)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.timeout_s = timeout_s
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(size)

    async def _open(self) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(
            hostname=self.hostname,
            port=self.port,
            username=self.username,
            password=self.password,
            use_tls=self.implicit_tls,
            start_tls=None if not self.implicit_tls else False,
            timeout=self.timeout_s,
        )
        await client.connect()
        return client

    async def send(self, mail: EmailMessage) -> None:
        async with self._slots:
            client = self._idle.pop() if self._idle else None
            reused = client is not None
            try:
                if client is None:
                    client = await self._open()
                try:
                    await client.send_message(mail)
                except aiosmtplib.SMTPServerDisconnected:
                    if not reused:
                        raise
                    _drop(client)  # closed by the relay while idle: once more on a new connection
                    client = await self._open()
                    await client.send_message(mail)
            except aiosmtplib.SMTPRecipientsRefused as exc:
                self._keep(client)
                raise PermanentFailure("destinataire refusé par le relais", code="550") from exc
            except aiosmtplib.SMTPResponseException as exc:
                self._keep(client)
                if 500 <= exc.code < 600:
                    raise PermanentFailure(f"refus du relais : {exc.code}", code=str(exc.code)) from exc
                raise ProviderUnavailable(f"relais indisponible : {exc.code}", code=str(exc.code)) from exc
            except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, TimeoutError) as exc:
                _drop(client)
                raise AmbiguousSend(f"relais : connexion perdue ({type(exc).__name__})") from exc
            except (aiosmtplib.SMTPException, OSError) as exc:
                _drop(client)
                raise ProviderUnavailable(f"relais injoignable : {type(exc).__name__}") from exc
            self._keep(client)

    def _keep(self, client: aiosmtplib.SMTP | None) -> None:
        if client is not None and client.is_connected:
            self._idle.append(client)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.quit(), timeout=2)


def _drop(client: aiosmtplib.SMTP | None) -> None:
    if client is not None:
        with contextlib.suppress(Exception):
            client.close()
