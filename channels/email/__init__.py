"""E-mail: an SMTP listener in, a relay (or a file outbox) out."""

from __future__ import annotations

from channels.base import ChannelContext
from channels.email.channel import EmailChannel
from channels.email.parse import parse_email

__all__ = ["EmailChannel", "create", "parse_email"]


def create(ctx: ChannelContext) -> EmailChannel:
    """Always on: without a relay, replies go to the file outbox."""
    return EmailChannel(ctx)
