"""Callback requests: a web form and a JSON API to ask to be called back by an agent."""

from __future__ import annotations

from channels.base import ChannelContext
from channels.callback.channel import CallbackChannel
from channels.callback.validation import CallbackRequest, ValidationError, validate

__all__ = ["CallbackChannel", "CallbackRequest", "ValidationError", "create", "validate"]


def create(ctx: ChannelContext) -> CallbackChannel:
    """Always on."""
    return CallbackChannel(ctx)
