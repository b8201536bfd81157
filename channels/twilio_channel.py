"""What the Twilio channels (SMS, WhatsApp) share: the signed webhooks' routes, the REST sender, the
status callback URL naming our message, and finding at Twilio a send whose answer was lost."""

from __future__ import annotations

import logging
import re
from typing import Any, ClassVar
from urllib.parse import urlencode

from aiohttp import web

from channels.base import ChannelBase, ChannelContext
from channels.twilio_api import TwilioSender
from channels.twilio_webhook import SignatureCheck
from gateway import keys
from gateway.envelope import Message, SendResult

log = logging.getLogger(__name__)


class TwilioChannel(ChannelBase):
    # Twilio's Messages API has no idempotency key: a send that may have gone is looked up, not repeated.
    ambiguous: ClassVar[str] = "at_most_once"
    inbound_path: ClassVar[str] = ""
    status_path: ClassVar[str] = ""

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        settings = ctx.settings
        self.public_url = settings.public_url.rstrip("/")
        self.signature = SignatureCheck(self.public_url, settings.twilio_auth_token, self.name)
        # A little under the dispatcher's own timeout, so the error is ours and explained.
        self.sender = TwilioSender(
            settings.twilio_account_sid,
            settings.twilio_auth_token,
            api_base=settings.twilio_api_base,
            timeout_s=max(1.0, settings.send_timeout_s * 0.9),
        )

    def routes(self) -> web.RouteTableDef:
        routes = web.RouteTableDef()
        routes.post(self.inbound_path)(self.handle_inbound)
        routes.post(self.status_path)(self.handle_status)
        return routes

    async def handle_inbound(self, request: web.Request) -> web.Response:
        raise NotImplementedError

    async def handle_status(self, request: web.Request) -> web.Response:
        raise NotImplementedError

    def _status_callback(self, msg: Message) -> str:
        """Our status URL, naming the message: a callback then finds it even if the send's answer was lost."""
        url = self.public_url + self.status_path
        if msg.conversation_id:
            url += "?" + urlencode({"ref": f"{msg.conversation_id} {msg.id}"})
        return url

    async def _found_at_twilio(
        self, msg: Message, *, to: str, body: str, since: float, within: bool = False
    ) -> SendResult | None:
        """The message Twilio lists (``TwilioSender.find``) that is this one, or None."""
        mine = f"{msg.conversation_id} {msg.id}"
        for sid in await self.sender.find(to=to, body=body, since=since, within=within):
            # The same text to the same member a moment before (a question asked again) is another message
            # of ours, known by its SID: taking it for this one would leave this one never sent.
            owner = await self.ctx.redis.get(keys.provider_ref(self.name, sid))
            if owner is not None and owner != mine:
                continue
            log.info("interrupted send found at twilio", extra={**msg.log_fields(), "sid": sid})
            return SendResult(external_id=sid, status="sent")
        return None

    async def stop(self) -> None:
        await self.sender.close()


def reply_sender(meta: dict[str, Any], pattern: re.Pattern[str]) -> str | None:
    """The Twilio number the member wrote to, carried back by the router in meta["thread"]."""
    thread = meta.get("thread")
    if isinstance(thread, dict):
        sender = thread.get("twilio_from")
        if isinstance(sender, str) and pattern.fullmatch(sender):
            return sender
    return None
