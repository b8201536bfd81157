"""The channel registry: adding a channel is one line here."""

from __future__ import annotations

from channels.base import ChannelFactory

# name -> "module:factory". Each factory takes a ChannelContext and returns the channel,
# or None when the channel is disabled (credentials not set).
FACTORIES: dict[str, str] = {
    "sms": "channels.sms:create",
    "whatsapp": "channels.whatsapp:create",
    "telegram": "channels.telegram:create",
    "email": "channels.email:create",
    "webchat": "channels.webchat:create",
    "callback": "channels.callback:create",
    "voice": "channels.voice:create",
}


def load(name: str) -> ChannelFactory:
    import importlib

    module_name, _, attr = FACTORIES[name].partition(":")
    factory: ChannelFactory = getattr(importlib.import_module(module_name), attr)
    return factory
