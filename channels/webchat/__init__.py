"""Web chat: an embeddable widget (one script tag) talking to the gateway over WebSocket."""

from __future__ import annotations

from channels.base import ChannelContext
from channels.webchat.channel import WebchatChannel
from channels.webchat.tokens import issue_token, verify_token

__all__ = ["WebchatChannel", "create", "issue_token", "verify_token"]


def create(ctx: ChannelContext) -> WebchatChannel:
    """Always on."""
    return WebchatChannel(ctx)
