"""SMS through Twilio: signed webhooks in, the Messages API out, STOP/START kept in Redis."""

from __future__ import annotations

from channels.base import ChannelContext
from channels.sms.channel import INBOUND_PATH, STATUS_PATH, SmsChannel
from channels.sms.encoding import SmsInfo, sms_info

__all__ = ["INBOUND_PATH", "STATUS_PATH", "SmsChannel", "SmsInfo", "create", "sms_info"]


def create(ctx: ChannelContext) -> SmsChannel | None:
    """The SMS channel, or None while Twilio credentials are not set."""
    if not ctx.settings.sms_enabled:
        return None
    return SmsChannel(ctx)
