"""Mail loops against ``run.py serve``: our auto-replies meet a robot mailbox that answers every mail
at once. The relay (``SMTP_URL``) is that robot: each mail we send it is answered back to our SMTP
listener. Whatever the robot writes, the exchange stops after a few mails."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.e2e.product import Product
from tests.fakes.smtp import SmtpSink

QUIET_S = 4.0  # no mail either way for this long: the exchange is over


@dataclass
class Robot:
    """How one robot address answers: ``reply`` builds its answer to a mail of ours (None: silence)."""

    address: str
    reply: Callable[[EmailMessage, int], EmailMessage]
    received: list[EmailMessage] = field(default_factory=list)
    sent: int = 0
    refused: list[str] = field(default_factory=list)


class RobotRelay(SmtpSink):
    """The relay as a set of robot mailboxes: every mail of ours is recorded, then answered."""

    def __init__(self, robots: list[Robot]) -> None:
        super().__init__()
        self.robots = {r.address: r for r in robots}
        self.listener_port = 0
        self.last_activity = time.monotonic()
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        ours = self.received[-1]
        self.last_activity = time.monotonic()
        for rcpt in ours.rcpt_tos:
            robot = self.robots.get(rcpt.lower())
            if robot is not None:
                robot.received.append(ours.message)
                task = asyncio.create_task(self.write(robot, robot.reply(ours.message, len(robot.received))))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return answer

    async def write(self, robot: Robot, mail: EmailMessage) -> None:
        robot.sent += 1
        self.last_activity = time.monotonic()
        try:
            await aiosmtplib.send(mail, hostname="127.0.0.1", port=self.listener_port, timeout=10)
        except aiosmtplib.SMTPResponseException as exc:
            robot.refused.append(f"{exc.code} {exc.message}")


def first_mail(robot: str, subject: str, body: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = robot
    mail["To"] = "contact@mutuelle.example"
    mail["Subject"] = subject
    mail["Message-ID"] = f"<first.{robot}>"
    mail.set_content(body)
    return mail


def unmarked(robot: str) -> Callable[[EmailMessage, int], EmailMessage]:
    """The worst case: an answer with no auto header, no threading, a new subject, a bland text."""

    def reply(ours: EmailMessage, n: int) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = robot
        mail["To"] = "contact@mutuelle.example"
        mail["Subject"] = f"Votre demande n° {4500 + n}"
        mail["Message-ID"] = f"<t{n}.{robot}>"
        mail.set_content(f"Bonjour,\nVotre demande n° {4500 + n} a été enregistrée par notre service.\n")
        return mail

    return reply


def vacation(robot: str) -> Callable[[EmailMessage, int], EmailMessage]:
    """A home-made out-of-office: threaded on our mail, no header says it is automatic."""

    def reply(ours: EmailMessage, n: int) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = robot
        mail["To"] = "contact@mutuelle.example"
        mail["Subject"] = f"Re: {ours['Subject']}"
        mail["Message-ID"] = f"<v{n}.{robot}>"
        mail["In-Reply-To"] = ours["Message-ID"]
        mail.set_content("Bonjour,\nJe suis actuellement absent, de retour le 5 janvier.\n")
        return mail

    return reply


@pytest.fixture
async def robot_relay() -> AsyncIterator[RobotRelay]:
    robots = [
        Robot("ticketing@robots.example", unmarked("ticketing@robots.example")),
        Robot("vacances@robots.example", vacation("vacances@robots.example")),
    ]
    async with RobotRelay(robots) as relay:
        yield relay


async def test_a_robot_answering_every_mail_gets_a_bounded_exchange(
    make_product: Callable[..., Product], robot_relay: RobotRelay
) -> None:
    product = make_product(SMTP_URL=robot_relay.url)
    robot_relay.listener_port = product.smtp_port
    await product.start()
    started = time.monotonic()
    for robot, subject, body in (
        ("ticketing@robots.example", "Votre demande n° 4500", "Bonjour,\nVotre demande a été enregistrée.\n"),
        ("vacances@robots.example", "Question", "Bonjour, où en est mon remboursement ?\n"),
    ):
        await aiosmtplib.send(first_mail(robot, subject, body), hostname="127.0.0.1", port=product.smtp_port)
    robot_relay.last_activity = time.monotonic()
    while time.monotonic() - robot_relay.last_activity < QUIET_S:
        assert time.monotonic() - started < 90, "the exchange does not stop"
        await asyncio.sleep(0.2)
    ticketing, vacances = robot_relay.robots.values()
    print(
        f"\nunmarked robot: {ticketing.sent + 1} mails in, {len(ticketing.received)} answers out;"
        f" home-made out-of-office: {vacances.sent + 1} in, {len(vacances.received)} out;"
        f" over after {robot_relay.last_activity - started:.1f} s"
    )
    # The unmarked robot: answered ten times (EMAIL_ANSWERED_PER_10MIN), its eleventh mail is not answered.
    assert len(ticketing.received) == 10 and ticketing.sent == 10
    # The home-made out-of-office: the member's question is answered, the out-of-office is not.
    assert len(vacances.received) == 1 and vacances.sent == 1
    # Every robot mail was accepted (stored for the agents), none refused.
    assert ticketing.refused == [] and vacances.refused == []
    for mail in ticketing.received + vacances.received:
        assert mail["Auto-Submitted"] == "auto-replied"
        assert mail["X-Auto-Response-Suppress"] == "All"
    assert product.stop() == 0
    logs = product.logs()
    assert "Traceback" not in logs
    assert logs.count("e-mail received") == 2 + ticketing.sent + vacances.sent
    assert logs.count("over the loop limit") == 1
