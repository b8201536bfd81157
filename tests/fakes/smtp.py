"""A loopback SMTP server (real aiosmtpd) that records what it receives, standing for the relay.

async with SmtpSink() as sink:
    env["SMTP_URL"] = sink.url                       # smtp://127.0.0.1:<port>
    [mail] = await sink.wait_for(1, timeout=5)
    sink.inject(451)                                  # the next message gets a temporary refusal
    sink.inject(250, delay=5.0)                       # the next one is taken, but answered late
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from dataclasses import dataclass
from email.message import EmailMessage

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


class SmtpSink:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.faults: list[tuple[int, float]] = []
        self.connections = 0  # SMTP sessions opened to the sink
        self._server: asyncio.AbstractServer | None = None
        self._changed = asyncio.Condition()
        self.port = 0

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def inject(self, code: int, n: int = 1, *, delay: float = 0.0) -> None:
        """The next ``n`` messages are answered ``code`` (a 250 is still recorded) after ``delay`` s."""
        self.faults.extend([(code, delay)] * n)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        code, delay = self.faults.pop(0) if self.faults else (250, 0.0)
        if delay:
            await asyncio.sleep(delay)
        if code != 250:
            return f"{code} {'4.0.0 try later' if code < 500 else '5.0.0 refused'}"
        msg = email.message_from_bytes(envelope.original_content or b"", policy=email.policy.default)
        async with self._changed:
            self.received.append(Received(envelope.mail_from or "", list(envelope.rcpt_tos), msg))  # type: ignore[arg-type]
            self._changed.notify_all()
        return "250 OK"

    async def __aenter__(self) -> SmtpSink:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._session, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def _session(self) -> SMTP:
        self.connections += 1
        return SMTP(self, decode_data=False)

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def wait_for(self, n: int, timeout: float = 5.0) -> list[Received]:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.received) >= n), timeout)
        return list(self.received)
