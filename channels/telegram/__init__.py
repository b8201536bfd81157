"""Telegram: webhook in, Bot API out (python-telegram-bot)."""

from __future__ import annotations

from channels.base import ChannelContext
from channels.telegram.channel import TelegramChannel, split_text
from channels.telegram.parse import parse_update

__all__ = ["TelegramChannel", "create", "parse_update", "split_text"]


def create(ctx: ChannelContext) -> TelegramChannel | None:
    """The Telegram channel, or None while TELEGRAM_TOKEN is not set."""
    if not ctx.settings.telegram_enabled:
        return None
    return TelegramChannel(ctx)
