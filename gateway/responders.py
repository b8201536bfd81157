"""Responders answer inbound messages. The router asks the conversation's responder.

The bot (``gateway/rasa.py``) answers in the product. The ``AckResponder`` (``RESPONDER=ack``,
explicitly named, not a stand-in for the bot) acknowledges every message: it keeps the gateway's
own tests and its ingest benchmark independent of Rasa.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.envelope import Message

# Texts fit the GSM-7 alphabet (no ç, ê, â...) so an SMS answer is one segment.
ACK_TEXT = "Message bien arrivé, merci. Un conseiller de votre mutuelle vous répondra dans les meilleurs délais."
CALLBACK_TEXT = "Votre demande de rappel est bien enregistrée. Un conseiller vous appellera sur le créneau choisi."


def callback_text(meta: dict[str, object]) -> str:
    """The confirmation of a callback request: its short reference and slot when known."""
    reference, start, end = (str(meta.get(k) or "") for k in ("reference", "slot_start", "slot_end"))
    if not (reference and len(start) >= 16 and len(end) >= 16):
        return CALLBACK_TEXT
    day = f"{start[8:10]}/{start[5:7]}"
    return (
        f"Votre demande de rappel {reference} est bien enregistrée. Un conseiller vous appellera le {day} "
        f"entre {_hour(start[11:16])} et {_hour(end[11:16])}. Donnez cette référence si vous nous écrivez."
    )


def _hour(hhmm: str) -> str:
    hours, minutes = hhmm.split(":")
    return f"{int(hours)} h" + ("" if minutes == "00" else f" {minutes}")


WELCOME_TEXT = (
    "Bonjour ! Je suis l'assistant de votre mutuelle. Posez-moi votre question : un remboursement, votre carte "
    "de tiers payant, un devis, une réclamation, votre cotisation… Écrivez « conseiller » pour échanger avec une "
    "personne de nos équipes."
)
OPTIN_TEXT = "Vous recevrez de nouveau nos SMS. Pour ne plus les recevoir, répondez STOP."


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer. By default it goes back to the sender on the conversation's channel; a
    one-time code goes instead to the member's registered phone or e-mail."""

    text: str
    channel: str | None = None
    urn: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "channel": self.channel, "urn": self.urn, "meta": self.meta}

    @classmethod
    def from_any(cls, raw: Any) -> Reply:
        if isinstance(raw, dict):
            return cls(str(raw.get("text") or ""), raw.get("channel"), raw.get("urn"), dict(raw.get("meta") or {}))
        return cls(str(raw))


class Responder(Protocol):
    name: str

    async def respond(self, msg: Message, conversation: dict[str, str]) -> list[Reply]:
        """Answers to send, in order (may be empty)."""
        ...


class AckResponder:
    """Acknowledges every member message; says nothing to automated mail or opt-outs."""

    name = "ack"

    async def respond(self, msg: Message, conversation: dict[str, str]) -> list[Reply]:
        fixed = fixed_answer(msg)
        return [Reply(t) for t in (fixed if fixed is not None else [ACK_TEXT])]


def fixed_answer(msg: Message) -> list[str] | None:
    """The answers that never depend on the bot: none to automated mail, opt-outs and delivery
    reports; a confirmation to an opt-in or a callback request; a welcome to Telegram's ``/start``.
    None for everything else."""
    if msg.automated or msg.kind in ("optout", "status"):
        return []
    if msg.kind == "optin":
        keyword = msg.meta.get("keyword")
        confirmed = isinstance(keyword, dict) and keyword.get("confirmed_by")
        return [] if confirmed else [OPTIN_TEXT]
    if msg.kind == "callback_request":
        return [callback_text(msg.meta)]
    if msg.kind == "command" and msg.text.strip().lower().startswith("/start"):  # Telegram's first message
        return [WELCOME_TEXT]
    return None
