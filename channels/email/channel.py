"""The e-mail channel: an SMTP listener in, aiosmtplib (or a file outbox) out.

Inbound: an aiosmtpd server runs in the gateway's own event loop, so a message is answered
``250`` only once it is durable in the inbound stream; ``451`` (try again later) if that
fails, ``552`` if it is larger than ``MAX_EMAIL_BYTES`` (lines may be as long as that: clients send
paragraphs, HTML and base64 unwrapped); every refusal is logged with its code and reason. With
``EMAIL_AUTHSERV_ID`` the MX's Authentication-Results decide whether the From is proven
(``parse.sender_verdict``). De-duplication is on the
Message-ID (a hash of the raw message when there is none), so a relay's redelivery is
accepted and ignored.

Outbound: text and HTML from ``templates/email/``, a deterministic Message-ID
(``<msg id@EMAIL_DOMAIN>``, the same on a resend), In-Reply-To and References from the
thread, ``Auto-Submitted: auto-replied``. Without ``SMTP_URL`` the message is written to
``var/outbox/<id>.eml`` (written then renamed, so a reader never sees half a file).
"""

from __future__ import annotations

import asyncio
import logging
import os
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, ClassVar

from aiosmtpd.smtp import SMTP, Envelope, Session
from redis.exceptions import RedisError

from channels.base import ChannelBase, ChannelContext, RateLimit
from channels.email.loops import LoopGuard
from channels.email.notice import notice_html
from channels.email.parse import CHANNEL, MAX_HEADER_BYTES, Bounce, bounces, header_size, parse_email
from channels.email.relay import SmtpPool
from gateway import keys, unsubscribe
from gateway.envelope import Message, SendResult, StatusUpdate

log = logging.getLogger(__name__)

# SMTP replies are ASCII (aiosmtpd encodes them so, and fails on anything else): French without accents.
TRY_LATER = "451 4.3.0 Reessayez plus tard / try again later"


class _Listener(SMTP):
    """aiosmtpd's server, taking lines of any length up to the size limit and logging every refusal.

    RFC 5321 caps a line at 1,000 octets, but mail clients send longer ones (an unwrapped paragraph,
    HTML on one line, base64 without line breaks): refusing them bounced members' mail. The line
    limit is the message size limit instead, so a mail is refused only for its size (552)."""

    def __init__(self, handler: _Handler, *, size_limit: int, **kwargs: Any) -> None:
        # Read by aiosmtpd's __init__ for its stream reader's buffer; DATA's total is still size_limit.
        self.line_length_limit = size_limit + 1024
        super().__init__(handler, data_size_limit=size_limit, **kwargs)

    async def push(self, status: Any) -> None:
        text = status.decode("ascii", "replace") if isinstance(status, bytes) else str(status)
        if text[:1] in ("4", "5"):  # our reply or aiosmtpd's; never the mail's content
            log.warning(
                "e-mail refused",
                extra={"channel": CHANNEL, "code": text[:3], "reason": " ".join(text[4:].split())[:120]},
            )
        await super().push(status)


class _Handler:
    def __init__(self, channel: EmailChannel) -> None:
        self.channel = channel

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        try:
            return await self._handle(envelope)
        except Exception:  # a bug of ours: the sender keeps the mail and tries again later
            log.exception("e-mail handling failed", extra={"channel": CHANNEL})
            return TRY_LATER

    async def _handle(self, envelope: Envelope) -> str:
        s = self.channel.ctx.settings
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", errors="replace")
        if len(raw) > s.max_email_bytes:
            return "552 5.3.4 Message trop volumineux / message too big"
        if header_size(raw) > MAX_HEADER_BYTES:
            return "552 5.3.4 En-tetes trop volumineux / headers too large"
        try:  # in a thread: a large mail must not hold up the other channels of this process
            msg = await asyncio.to_thread(parse_email, raw, envelope.mail_from, s.email_domain, s.email_authserv_id)
        except RecursionError:
            log.warning("e-mail nested too deeply refused", extra={"channel": CHANNEL})
            return "550 5.6.0 Structure MIME trop imbriquee / MIME structure nested too deeply"
        except Exception as exc:
            log.warning("unreadable e-mail refused", extra={"channel": CHANNEL, "error": type(exc).__name__})
            return "550 5.6.0 Message illisible / unreadable message"
        if self.channel.for_unsubscribe(envelope.rcpt_tos):
            return await self.channel.unsubscribe(msg)
        if str(msg.meta.get("automated_reason") or "").startswith("report:"):
            failures = [
                b for b in await asyncio.to_thread(bounces, raw) if b.original_id.endswith(f"@{s.email_domain}")
            ]
            if failures:  # a notice or reply of ours bounced: its status, not a message to store
                return await self.channel.bounced(failures)
        try:
            if not msg.automated:
                msg = await self.channel.pace(msg)
            result = await self.channel.ctx.accept(msg)
        except (RedisError, OSError):
            log.error("e-mail not stored, sender will retry", extra=msg.log_fields())
            return TRY_LATER
        log.info(
            "e-mail received",
            extra={
                **msg.log_fields(),
                "duplicate": result.duplicate,
                "automated": msg.automated,
                "automated_reason": msg.meta.get("automated_reason"),
                "sender_auth": msg.meta.get("sender_auth"),
                "forwarded": bool(msg.meta.get("forwarded")),
            },
        )
        return "250 2.0.0 OK"


class EmailChannel(ChannelBase):
    name: ClassVar[str] = CHANNEL
    joins_replies: ClassVar[bool] = True  # a member who wrote one mail gets one reply mail per bot turn

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        self._pool: SmtpPool | None = None
        self._server: asyncio.AbstractServer | None = None
        self.port: int = ctx.settings.smtp_listen_port
        self.loops = LoopGuard(
            ctx.redis, per_10min=ctx.settings.email_answered_per_10min, per_day=ctx.settings.email_answered_per_day
        )

    async def start(self) -> None:
        if "web" not in self.ctx.roles:
            return
        s = self.ctx.settings
        loop = asyncio.get_running_loop()
        handler = _Handler(self)
        self._server = await loop.create_server(
            lambda: _Listener(
                handler,
                size_limit=s.max_email_bytes,
                hostname=s.email_domain,
                ident="mutuelle-gateway",
                decode_data=False,
            ),
            host=s.smtp_listen_host,
            port=s.smtp_listen_port,
            reuse_address=True,
        )
        sock = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def pace(self, msg: Message) -> Message:
        """``msg``, marked automated (stored, never answered) when its sender writes more than a person
        would: the end of any ping-pong between our auto-replies and a robot that marks nothing."""
        pace = await self.loops.count(msg.urn.removeprefix("mailto:"), msg.external_id or msg.id)
        if not pace.over:
            return msg
        log.info(
            "e-mail sender over the loop limit, not answered",
            extra={**msg.log_fields(), "last_10min": pace.last_10min, "last_day": pace.last_day},
        )
        return msg.with_(automated=True, meta={**msg.meta, "automated_reason": "loop-limit"})

    def for_unsubscribe(self, recipients: list[str]) -> bool:
        """Mail to ``desabonnement@EMAIL_DOMAIN`` (the List-Unsubscribe mailto) is a request, not a message."""
        target = f"{unsubscribe.LOCAL_PART}@{self.ctx.settings.email_domain}".lower()
        return any(r.strip().strip("<>").lower() == target for r in recipients)

    async def unsubscribe(self, msg: Message) -> str:
        """Honour an unsubscribe mail: the token in its subject, else its sender (only a proven one when
        ``EMAIL_AUTHSERV_ID`` is set: a forged From must not unsubscribe a member). Never answered."""
        number = unsubscribe.member_of(self.ctx.settings.secret_key, str(msg.meta.get("subject") or ""))
        unproven = str(msg.meta.get("automated_reason") or "").startswith("unauthenticated:")
        if msg.automated and not (unproven and number is not None):
            return "250 2.0.0 OK"  # a bounce or an auto-reply is no request; nor a forged From without a token
        try:
            if number is not None:
                await unsubscribe.unsubscribe(self.ctx.redis, number, CHANNEL, self.ctx.unsubscribed)
            else:
                await unsubscribe.unsubscribe_address(
                    self.ctx.redis, msg.urn.removeprefix("mailto:"), CHANNEL, self.ctx.unsubscribed
                )
        except (RedisError, OSError):
            return TRY_LATER
        log.info("information e-mails declined", extra={"via": "mailto", "token": number is not None})
        return "250 2.0.0 OK"

    async def bounced(self, failures: list[Bounce]) -> str:
        """Mark the mails a DSN reports failed (a campaign notice then goes to its next channel)."""
        try:
            for failure in failures:
                await self.ctx.status(
                    StatusUpdate(CHANNEL, failure.original_id, "failed", failure.status or "5.0.0", failure.diagnostic)
                )
        except (RedisError, OSError):
            return TRY_LATER
        log.info("bounce applied", extra={"channel": CHANNEL, "codes": [f.status for f in failures][:5]})
        return "250 2.0.0 OK"

    def rate_limits(self, msg: Message) -> list[RateLimit]:
        return [RateLimit("email", self.ctx.settings.email_rate_per_s, burst=10)]

    def build(self, msg: Message) -> EmailMessage:
        s = self.ctx.settings
        thread: dict[str, Any] = msg.meta.get("thread") or {}
        mail = EmailMessage()
        mail["From"] = s.email_from
        mail["To"] = msg.urn.removeprefix("mailto:")
        mail["Subject"] = str(thread.get("subject") or "Votre mutuelle")
        mail["Date"] = formatdate(localtime=False)
        mail["Message-ID"] = f"<{msg.id}@{s.email_domain}>" if msg.id else make_msgid(domain=s.email_domain)
        mail["X-Auto-Response-Suppress"] = "All"  # Exchange and Outlook: no out-of-office back to us
        if thread.get("in_reply_to"):
            mail["In-Reply-To"] = f"<{thread['in_reply_to']}>"
        refs = [r for r in thread.get("references") or [] if isinstance(r, str)]
        if refs:
            mail["References"] = " ".join(f"<{r}>" for r in refs[-20:])
        if msg.meta.get("campaign"):  # a notice: its own text and HTML, sent on our initiative
            mail["Auto-Submitted"] = "auto-generated"
            if msg.meta.get("list_unsubscribe") and msg.meta.get("member"):  # information members may decline
                for name, value in unsubscribe.headers(
                    s.secret_key, s.public_url, s.email_domain, str(msg.meta["member"])
                ).items():
                    mail[name] = value
            mail.set_content(msg.text)
            page = msg.meta.get("html")
            mail.add_alternative(page if isinstance(page, str) and page else notice_html(mail["Subject"], msg.text),
                                 subtype="html")  # fmt: skip
            return mail
        mail["Auto-Submitted"] = "auto-replied"
        context = {"text": msg.text, "subject": mail["Subject"]}
        mail.set_content(self.ctx.templates.get_template("email/reply.txt.j2").render(**context))
        mail.add_alternative(self.ctx.templates.get_template("email/reply.html.j2").render(**context), subtype="html")
        return mail

    async def send(self, msg: Message) -> SendResult:
        mail = self.build(msg)
        message_id = str(mail["Message-ID"]).strip("<>")
        s = self.ctx.settings
        if s.smtp_url:
            await self._relay(mail)
            via = "smtp"
        else:
            outbox = s.var_dir / "outbox"
            await asyncio.to_thread(_write_atomically, outbox / f"{msg.id}.eml", bytes(mail))
            via = "outbox"
        if msg.conversation_id:
            await self.ctx.redis.set(keys.email_thread(message_id), msg.conversation_id, ex=180 * 24 * 3600)
        return SendResult(external_id=message_id, status="sent", meta={"via": via})

    async def _relay(self, mail: EmailMessage) -> None:
        if self._pool is None:
            self._pool = SmtpPool(self.ctx.settings.smtp_url, timeout_s=self.ctx.settings.send_timeout_s)
        await self._pool.send(mail)


def _write_atomically(path: os.PathLike[str], data: bytes) -> None:
    target = os.fspath(path)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = f"{target}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
