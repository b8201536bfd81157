"""WhatsApp through Twilio: signed webhooks in, the Messages API out (free text inside the
24-hour window, approved templates outside it), STOP/START kept in Redis."""

from __future__ import annotations

from channels.base import ChannelContext
from channels.whatsapp.channel import INBOUND_PATH, STATUS_PATH, OutsideWindow, WhatsAppChannel

__all__ = ["INBOUND_PATH", "STATUS_PATH", "OutsideWindow", "WhatsAppChannel", "create"]


def create(ctx: ChannelContext) -> WhatsAppChannel | None:
    """The WhatsApp channel, or None while Twilio's account or TWILIO_WHATSAPP_FROM is not set."""
    if not ctx.settings.whatsapp_enabled:
        return None
    return WhatsAppChannel(ctx)
