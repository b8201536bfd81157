"""SMS encoding and segment count of a text: a pure function, no I/O.

An SMS carries 140 bytes. A text that fits the GSM 03.38 alphabet goes out in GSM-7
(160 septets, or 153 per segment once split, the rest being the concatenation header);
anything else goes out in UCS-2 (70 UTF-16 code units, or 67 per segment). Characters of
the GSM extension table (``€ [ ] { } ~ ^ | \\`` and form feed) take two septets (escape +
char), so ``units`` counts them twice. In UCS-2, characters outside the Basic Multilingual
Plane (most emoji) take two code units. When a text is split, an escaped GSM character
or a UTF-16 surrogate pair is never cut in two: it moves whole to the next segment, as
handsets and Twilio's own segment calculator do.

French accents: é è ù ì ò à É Ç are in the GSM basic table; ê â î ô û ë ï ç (lower-case
c cedilla) and œ are not, so one of them turns the whole text into UCS-2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Encoding = Literal["GSM-7", "UCS-2"]

# GSM 03.38 default alphabet, in table order (0x1B, the escape to the extension table,
# is left out: it is not a character of its own).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# GSM 03.38 extension table: each costs two septets.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE = 160
GSM7_MULTI = 153
UCS2_SINGLE = 70
UCS2_MULTI = 67


@dataclass(frozen=True, slots=True)
class SmsInfo:
    encoding: Encoding
    segments: int  # 0 for an empty text
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def _costs(text: str, gsm: bool) -> list[int]:
    if gsm:
        return [2 if ch in GSM7_EXTENSION else 1 for ch in text]
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def _pack(costs: list[int], per_segment: int) -> int:
    """Segments needed when no character may straddle two segments."""
    segments, used = 1, 0
    for cost in costs:
        if used + cost > per_segment:
            segments += 1
            used = 0
        used += cost
    return segments


def sms_info(text: str) -> SmsInfo:
    """Encoding, segment count and length in encoding units of ``text`` sent as one SMS."""
    gsm = is_gsm7(text)
    costs = _costs(text, gsm)
    units = sum(costs)
    single, multi = (GSM7_SINGLE, GSM7_MULTI) if gsm else (UCS2_SINGLE, UCS2_MULTI)
    if units == 0:
        segments = 0
    elif units <= single:
        segments = 1
    else:
        segments = _pack(costs, multi)
    return SmsInfo("GSM-7" if gsm else "UCS-2", segments, units)
