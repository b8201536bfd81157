"""Responders answer inbound messages. The router asks the conversation's responder.

Until the bot lands, the ``AckResponder`` (explicitly named, not a stand-in for the bot)
keeps the loop testable: it acknowledges every message the member sends.
"""

from __future__ import annotations

from typing import Protocol

from gateway.envelope import Message

# Texts fit the GSM-7 alphabet (no ç, ê, â...) so an SMS answer is one segment.
ACK_TEXT = "Message bien arrivé, merci. Un conseiller de votre mutuelle vous répondra dans les meilleurs délais."
CALLBACK_TEXT = "Votre demande de rappel est bien enregistrée. Un conseiller vous appellera sur le créneau choisi."
OPTIN_TEXT = "Vous recevrez de nouveau nos SMS. Pour ne plus les recevoir, répondez STOP."


class Responder(Protocol):
    name: str

    async def respond(self, msg: Message, conversation: dict[str, str]) -> list[str]:
        """Texts to send back on the member's channel, in order (may be empty)."""
        ...


class AckResponder:
    """Acknowledges every member message; says nothing to automated mail or opt-outs."""

    name = "ack"

    async def respond(self, msg: Message, conversation: dict[str, str]) -> list[str]:
        if msg.automated or msg.kind in ("optout", "status"):
            return []
        if msg.kind == "optin":
            keyword = msg.meta.get("keyword")
            confirmed = isinstance(keyword, dict) and keyword.get("confirmed_by")
            return [] if confirmed else [OPTIN_TEXT]
        if msg.kind == "callback_request":
            return [CALLBACK_TEXT]
        return [ACK_TEXT]
