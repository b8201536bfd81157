"""The cover levels (« formules ») the mutuelle sells: one setting for the import, the bot's answers, the
demo data and the campaigns' audience filter.

``COVER_LEVELS`` lists them, comma-separated, as the mutuelle writes them (« Essentiel, Confort, Confort+,
Intégral »); its default is the four names used so far. The import accepts a level however it is cased
or accented (« integral », « INTEGRAL ») and stores the setting's spelling; any other level is refused,
naming the line. The bot shows a stored level in the setting's spelling, so records imported before the
setting changed read the same. Standard library only: the bot's actions import it in their own virtualenv.
"""

from __future__ import annotations

import os
import unicodedata
from functools import lru_cache

DEFAULT_LEVELS = ("essentiel", "confort", "renfort", "integral")
ENV = "COVER_LEVELS"


@lru_cache(maxsize=4096)
def fold(text: str) -> str:
    """Lower case, no accents, single spaces: « Intégral » and « INTEGRAL » are one level."""
    text = unicodedata.normalize("NFKD", text.strip().lower())
    return " ".join("".join(c for c in text if not unicodedata.combining(c)).split())


@lru_cache(maxsize=8)
def _parse(setting: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(" ".join(n.split()) for n in setting.split(",") if n.strip()))
    if not names:
        raise ValueError(f"{ENV}: no cover level named (comma-separated names, as « Essentiel,Confort »)")
    if len({fold(n) for n in names}) != len(names):
        raise ValueError(f"{ENV}: two levels differ only by case or accents ({setting!r})")
    if any(len(n) > 60 for n in names):
        raise ValueError(f"{ENV}: a level name is longer than 60 characters")
    return names


def levels() -> tuple[str, ...]:
    """The mutuelle's levels, in the setting's order and spelling (default: today's four names)."""
    return _parse(os.environ.get(ENV, "").strip() or ",".join(DEFAULT_LEVELS))


def canonical(value: str) -> str | None:
    """The level ``value`` names, in the setting's spelling; None when it is none of them."""
    wanted = fold(value)
    return next((name for name in levels() if fold(name) == wanted), None) if wanted else None


def label(value: str) -> str:
    """How the bot names a stored level: the setting's spelling when it is one of them, else as stored."""
    return canonical(value) or value.strip()


@lru_cache(maxsize=256)
def _folded(names: tuple[str, ...]) -> frozenset[str]:
    return frozenset(fold(n) for n in names)


def same_level(value: str, names: list[str] | tuple[str, ...]) -> bool:
    """Whether ``value`` is one of ``names`` however cased or accented (a campaign's audience filter
    matches records imported before the setting's spelling changed)."""
    return fold(value) in _folded(tuple(names))
