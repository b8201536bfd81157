"""The member-number format: one setting for the import, the bot's parser and the demo data.

``MEMBER_NUMBER_FORMAT`` gives the canonical form with ``#`` for each digit; its default, « M »
and 7 digits (``M#######``), is the format of every number issued so far. The letters and signs
before the digits are the prefix; a number is stored and shown in its canonical form.

Members type their number in many ways: « M0100002 », « m 010 0002 », « 0100002 » (without the
prefix), « MT-0100002 »; ``parse`` reads them all as the canonical number, and ``valid`` says
whether an imported value is canonical (the import refuses what the bot could not read).
Standard library only: the bot's actions import it in their own virtualenv.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache

DEFAULT_FORMAT = "M#######"
ENV = "MEMBER_NUMBER_FORMAT"


@dataclass(frozen=True, slots=True)
class NumberFormat:
    prefix: str  # « M », « MT- »
    digits: int  # how many digits follow it

    @classmethod
    def parse(cls, text: str) -> NumberFormat:
        """From the setting (``M#######``, ``MT-########``); ValueError saying what is wrong."""
        m = re.fullmatch(r"([A-Za-z][A-Za-z-]{0,5})?(#{4,12})", text.strip())
        if not m:
            raise ValueError(f"member-number format {text!r}: letters then # for each digit, as M#######")
        return cls((m.group(1) or "").upper(), len(m.group(2)))

    @property
    def example(self) -> str:
        """A number in this format, for the bot's hints: « M9876543 » (an example, nobody's real number)."""
        return self.prefix + "98765432109876"[: self.digits]

    @property
    def wording(self) -> str:
        """« M suivi de 7 chiffres »."""
        head = self.prefix.rstrip("-")
        return f"{head} suivi de {self.digits} chiffres" if head else f"{self.digits} chiffres"

    @property
    def _canonical(self) -> re.Pattern[str]:
        return re.compile(re.escape(self.prefix) + rf"\d{{{self.digits}}}")

    @property
    def _loose(self) -> re.Pattern[str]:
        # Optional letters (the prefix or its first letters: « M », « MT », any case), an optional dash
        # or spaces, then the digits, possibly grouped with spaces or dots: « M 010 00 02 ».
        letters = self.prefix.rstrip("-").upper() or "M"
        options = sorted({letters[:i] for i in range(1, len(letters) + 1)} | {"M", "MT"}, key=len, reverse=True)
        head = "(?:" + "|".join(re.escape(o) for o in options) + r")\s*-?\s*"
        digit_run = r"\d(?:[ .]?\d){" + str(self.digits - 1) + "}"
        return re.compile(rf"(?<![\w/-])(?:{head})?({digit_run})(?![\w/])", re.IGNORECASE)

    def valid(self, value: str) -> bool:
        """Whether ``value`` is a canonical number (what the import accepts)."""
        return bool(self._canonical.fullmatch(value))

    def parse_number(self, text: str) -> str | None:
        """The canonical number typed in ``text``, however it is written; None when there is none."""
        for m in self._loose.finditer(text or ""):
            digits = re.sub(r"\D", "", m.group(1))
            if len(digits) == self.digits:
                return self.prefix + digits
        return None

    def looks_like_a_try(self, text: str) -> bool:
        """A value that is meant as a number but has the wrong number of digits (« M01234 »): the bot
        answers with an example instead of counting it."""
        folded = re.sub(r"[\s.-]", "", text or "")
        return bool(re.search(r"(?i)(?:mt?)?\d{4,12}", folded)) and self.parse_number(text) is None


@lru_cache(maxsize=8)
def _cached(text: str) -> NumberFormat:
    return NumberFormat.parse(text)


def current() -> NumberFormat:
    """The format the setting gives (``MEMBER_NUMBER_FORMAT``, default ``M#######``)."""
    return _cached(os.environ.get(ENV, "").strip() or DEFAULT_FORMAT)
