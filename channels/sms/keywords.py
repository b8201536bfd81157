"""SMS opt-out and opt-in keywords (STOP, ARRET, START...): pure functions, no I/O.

A message is a keyword only when it is the keyword itself: letters compared without case
or accents, surrounded by nothing but spaces and punctuation. So ``stop``, ``STOP ``,
``Stop.``, ``Arrêt !`` and ``« STOP »`` are keywords; ``stop svp``, ``STOP STOP`` and
``je ne veux pas que ça stoppe`` are not (Twilio also acts on single-word messages only,
and a longer message is better read by a person or the bot than taken as an opt-out).

* English keywords are Twilio's defaults for long codes: Twilio itself blocks (or
  unblocks) the number and answers the member, in English. We record the same state so
  the dispatcher does not even try (Twilio would refuse with error 21610).
* French keywords are unknown to Twilio (unless configured with Advanced Opt-Out, which
  then says so with the ``OptOutType`` parameter): the gateway records the opt-out or
  opt-in and answers itself, in French, in the TwiML response.
* ``YES`` re-subscribes at Twilio only a number that had opted out; any other "yes" is an
  ordinary answer (to the bot, say), so it is an opt-in only for an opted-out number.
* A keyword written with punctuation or accents (``Stop.``) may not be recognised by
  Twilio; the gateway then treats it as one of its own and confirms it in French.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Literal

Action = Literal["optout", "optin", "optin_if_opted_out", "help"]
ConfirmedBy = Literal["twilio", "gateway"]

# Twilio's default keywords (Programmable Messaging, long codes).
TWILIO_OPT_OUT = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout"})
TWILIO_OPT_IN = frozenset({"start", "unstop"})
TWILIO_OPT_IN_IF_OPTED_OUT = frozenset({"yes"})
TWILIO_HELP = frozenset({"help", "info"})

# French keywords the gateway handles itself (compared without accents: "arrêt" -> "arret").
FRENCH_OPT_OUT = frozenset(
    {
        "arret",
        "arrete",
        "arreter",
        "arretez",
        "desinscrire",
        "desinscription",
        "desabonner",
        "desabonnement",
    }
)
FRENCH_OPT_IN = frozenset({"demarrer", "reprendre", "reabonner", "reinscrire"})

# What the gateway answers (TwiML) to a keyword Twilio does not confirm itself.
OPT_OUT_REPLY = "Votre mutuelle : vous ne recevrez plus nos SMS. Pour les recevoir de nouveau, répondez START."
OPT_IN_REPLY = "Votre mutuelle : vous recevrez de nouveau nos SMS. Pour ne plus les recevoir, répondez STOP."


# Twilio's ``OptOutType`` webhook parameter (Advanced Opt-Out) -> action.
_ADVANCED_OPT_OUT: dict[str, Action] = {"STOP": "optout", "START": "optin", "HELP": "help"}


@dataclass(frozen=True, slots=True)
class Keyword:
    word: str  # normalised: lower case, no accents ("arret")
    action: Action
    confirmed_by: ConfirmedBy  # who tells the member their choice was recorded


def fold(text: str) -> str:
    """Lower case without accents, edges stripped of spaces and punctuation."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    start, end = 0, len(bare)
    while start < end and _is_edge(bare[start]):
        start += 1
    while end > start and _is_edge(bare[end - 1]):
        end -= 1
    return bare[start:end]


def _is_edge(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch)[0] in ("P", "Z")


def match(body: str, opt_out_type: str = "") -> Keyword | None:
    """The keyword ``body`` is, if any. ``opt_out_type`` is Twilio's ``OptOutType`` parameter."""
    advanced = _ADVANCED_OPT_OUT.get(opt_out_type.strip().upper())
    if advanced is not None:
        # Twilio's Advanced Opt-Out recognised a (possibly custom) keyword and answered.
        return Keyword(fold(body)[:32], advanced, "twilio")
    if len(body) > 64:
        return None
    word = fold(body)
    if not word.isalpha():
        return None
    # Twilio matches its own keywords on the bare word (case-insensitive, spaces trimmed).
    exact = body.strip().casefold() == word
    if word in TWILIO_OPT_OUT:
        return Keyword(word, "optout", "twilio" if exact else "gateway")
    if word in TWILIO_OPT_IN:
        return Keyword(word, "optin", "twilio" if exact else "gateway")
    if word in TWILIO_OPT_IN_IF_OPTED_OUT:
        return Keyword(word, "optin_if_opted_out", "twilio" if exact else "gateway")
    if word in TWILIO_HELP:
        return Keyword(word, "help", "twilio")
    if word in FRENCH_OPT_OUT:
        return Keyword(word, "optout", "gateway")
    if word in FRENCH_OPT_IN:
        return Keyword(word, "optin", "gateway")
    return None
