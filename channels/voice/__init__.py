"""Phone calls through Twilio Programmable Voice: signed webhooks in, TwiML out (twilio's
``VoiceResponse``), the bot's replies said for the ear, calls queued for agents and placed to them."""

from __future__ import annotations

from channels.base import ChannelContext
from channels.voice.channel import CallEvents, VoiceChannel

__all__ = ["CallEvents", "VoiceChannel", "create"]


def create(ctx: ChannelContext) -> VoiceChannel | None:
    """The voice channel, or None while Twilio's account or TWILIO_VOICE_NUMBER is not set."""
    if not ctx.settings.voice_enabled:
        return None
    return VoiceChannel(ctx)
