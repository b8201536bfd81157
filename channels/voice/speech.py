"""Replies written for the eye, said for the ear: pure functions, no I/O.

The bot answers every channel with the same texts (``bot/actions/answers.py``); on the phone they are
rewritten here, in the voice channel, so the bot needs no phone-specific wording:

* amounts: « 87,66 € » → « 87 euros 66 », « 420,00 € » → « 420 euros »;
* dates: « 03/12/2026 » or « 3 décembre 2026 » → « 3 décembre » (the year is said only when it is not
  this year);
* no URLs (« sur notre site »), no parentheses, no typographic signs a voice would spell out;
* a numbered list becomes « Tapez 1 pour …, 2 pour … ou 3 pour … »: at most three choices are read,
  the others can still be named by voice;
* what asks to write or type a text asks to say it, and what asks for a date or a code asks for it on
  the keypad.

And the other way round, ``keypad_text`` turns the digits a caller typed into what the bot reads in
a text message (8 digits → a birth date « 12/03/1975 », 7 digits → a member number « M1234567 »).
"""

from __future__ import annotations

import datetime as dt
import re

MONTHS = (
    "janvier", "février", "mars", "avril", "mai", "juin",
    "juillet", "août", "septembre", "octobre", "novembre", "décembre",
)  # fmt: skip
MAX_CHOICES = 3

# Whole sentences of the bot with a better wording for the phone (matched after the generic rewrites).
PHRASES: tuple[tuple[str, str], ...] = (
    ("Quelle est votre date de naissance ? (JJ/MM/AAAA)",
     "Quelle est votre date de naissance ? Tapez-la sur le clavier de votre téléphone : deux chiffres pour le "
     "jour, deux pour le mois et quatre pour l'année."),
    ("Indiquez le code à 6 chiffres reçu.", "Tapez le code à 6 chiffres que vous venez de recevoir par SMS."),
    ("(M suivi de 7 chiffres)", ". Tapez les 7 chiffres qui suivent la lettre M"),
    ("Il vous répondra ici, dans cette conversation.", "Il va vous répondre."),
    ("vous répondra ici dès que possible", "vous rappellera dès que possible"),
    ("vous répondra ici", "va vous répondre"),
    ("Un conseiller prend la suite de cette conversation.", "Un conseiller va prendre la suite."),
    ("Répondez par son numéro :", ""),
    ("Répondez par le numéro du remboursement", "Tapez le numéro du remboursement"),
    ("Écrivez « conseiller »", "Dites « conseiller »"),
    ("écrire « conseiller »", "dire « conseiller »"),
    ("Tapez CONSEILLER.", "Dites « conseiller »."),
    ("Écrivez-moi en message privé, ou demandez", "Demandez"),
    ("Écrivez-nous", "Appelez-nous"),
    ("écrivez-lui", "dites-lui"),
)  # fmt: skip

_URL = re.compile(r"\s*:?\s*\bhttps?://[^\s]*[^\s.,;:!?)]", re.IGNORECASE)
_AMOUNT = re.compile(r"(\d{1,3}(?:[\u202f\u00a0 ]\d{3})*|\d+),(\d{2})\s*€")
_WHOLE_AMOUNT = re.compile(r"(\d+)\s*€")
_SLASH_DATE = re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{4})\b")
_WORD_DATE = re.compile(r"\b(1er|\d{1,2}) (" + "|".join(MONTHS) + r") (\d{4})\b")
_PARENS = re.compile(r"\s*\(([^()]*)\)")
_ITEM = re.compile(r"^\s*(\d{1,2})[.)]\s+(.+)$")


def _amount(match: re.Match[str]) -> str:
    units = re.sub(r"[\u202f\u00a0 ]", "", match.group(1))
    cents = match.group(2)
    return f"{units} euros" + ("" if cents == "00" else f" {cents}")


def _day(day: int, month: int, year: int, today: dt.date) -> str:
    said = f"{'1er' if day == 1 else day} {MONTHS[month - 1]}"
    return said if year == today.year else f"{said} {year}"


def for_the_ear(text: str, today: dt.date | None = None) -> str:
    """One reply, rewritten to be spoken."""
    today = today or dt.date.today()
    text = _URL.sub(" sur notre site", text)
    text = _AMOUNT.sub(_amount, text)
    text = _WHOLE_AMOUNT.sub(lambda m: f"{m.group(1)} euros", text)

    def slash(m: re.Match[str]) -> str:
        d, mo, y = int(m.group(1)), int(m.group(2)), int(m.group(3))
        return _day(d, mo, y, today) if 1 <= mo <= 12 and 1 <= d <= 31 else m.group(0)

    def words(m: re.Match[str]) -> str:
        d = 1 if m.group(1) == "1er" else int(m.group(1))
        return _day(d, MONTHS.index(m.group(2)) + 1, int(m.group(3)), today)

    text = _SLASH_DATE.sub(slash, text)
    text = _WORD_DATE.sub(words, text)
    for written, spoken in PHRASES:
        text = text.replace(written, spoken)
    text = _choices(text)
    text = _PARENS.sub(lambda m: f", {m.group(1).strip()}," if m.group(1).strip() else "", text)
    text = text.replace("\u202f", " ").replace("\u00a0", " ").replace("« ", "").replace(" »", "")
    text = re.sub(r",\s*([.,;:?!])", r"\1", text)
    text = re.sub(r"\s+([.,])", r"\1", text)
    text = re.sub(r"\.\s*\.", ".", text)
    text = re.sub(r"[ \t]+", " ", text)
    return " ".join(line.strip() for line in text.splitlines() if line.strip()).strip()


def _choices(text: str) -> str:
    """A numbered list (« 1. lunettes du … ») → « Tapez 1 pour lunettes du …, 2 pour … ou 3 pour … »."""
    lines = text.splitlines()
    items = [(i, m) for i, line in enumerate(lines) if (m := _ITEM.match(line))]
    if len(items) < 2:
        return text
    first = items[0][0]
    head = " ".join(line for line in lines[:first] if line.strip())
    read = [f"{m.group(1)} pour {m.group(2).strip().rstrip('.')}" for _, m in items[:MAX_CHOICES]]
    said = "Tapez " + ", ".join(read[:-1]) + " ou " + read[-1] + "."
    if len(items) > MAX_CHOICES:
        said += " Pour un autre, dites de quoi il s'agit."
    rest = " ".join(line for line in lines[items[-1][0] + 1 :] if line.strip())
    return " ".join(part for part in (head, said, rest) if part)


def keypad_text(digits: str, today: dt.date | None = None) -> str:
    """Keys typed on the phone → the text the bot reads: 8 digits that make a past date are a birth date
    (JJ/MM/AAAA), 7 digits a member number; anything else (a choice, a code) is passed as typed."""
    digits = "".join(c for c in digits if c.isdigit())
    today = today or dt.date.today()
    if len(digits) == 8:
        try:
            born = dt.date(int(digits[4:]), int(digits[2:4]), int(digits[:2]))
        except ValueError:
            return digits
        if born <= today:
            return born.strftime("%d/%m/%Y")
    if len(digits) == 7:
        return "M" + digits
    return digits
