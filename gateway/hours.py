"""Opening hours: when agents call members back and answer handed-off conversations.

One setting (``OPENING_HOURS``, ``Settings.opening_hours``) gives, per weekday, the time ranges
offered on the callback form; French public holidays (the ``holidays`` package, as the campaigns'
send window uses it) are always closed. The same object words the hours for members (the callback
form, what a handed-off member is told) and groups the agents' « Rappels » view by slot.

Format: ``;``-separated groups of days and ranges, days as ``mon``..``sun`` (or ``lun``..``dim``),
a span with ``-``, ranges separated by ``,``::

    mon-fri 09:00-12:00,12:00-14:00,14:00-18:00; sat 09:00-12:00

All times are Europe/Paris.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

PARIS = ZoneInfo("Europe/Paris")
DEFAULT_OPENING_HOURS = "mon-fri 09:00-12:00,12:00-14:00,14:00-18:00; sat 09:00-12:00"
DAY_NAMES = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
_DAY_CODES = {
    **{code: i for i, code in enumerate(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))},
    **{code: i for i, code in enumerate(("lun", "mar", "mer", "jeu", "ven", "sam", "dim"))},
}


@lru_cache(maxsize=64)
def _holidays(year: int) -> dict[dt.date, str]:
    return dict(holidays.country_holidays("FR", years=year, language="fr"))


def holiday_name(day: dt.date) -> str | None:
    """The French public holiday's name on ``day`` (« Noël »), or None."""
    return _holidays(day.year).get(day)


def fr_hour(t: dt.time) -> str:
    """9 h, 8 h 30, 18 h."""
    return f"{t.hour} h" + (f" {t.minute:02d}" if t.minute else "")


@dataclass(frozen=True, slots=True, order=True)
class Slot:
    start: dt.time
    end: dt.time

    @property
    def key(self) -> str:
        """The value the callback form and API send: ``09:00-12:00``."""
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    @property
    def label(self) -> str:
        return f"{fr_hour(self.start)} – {fr_hour(self.end)}"


def _parse_time(text: str) -> dt.time:
    hours, _, minutes = text.strip().partition(":")
    if hours == "24" and minutes in ("", "00"):
        return dt.time.max.replace(microsecond=0)  # 23:59:59: "until midnight"
    return dt.time(int(hours), int(minutes or 0))


@dataclass(frozen=True, slots=True)
class OpeningHours:
    """Per weekday (0 = Monday) the offered slots; public holidays closed."""

    days: tuple[tuple[Slot, ...], ...]

    @classmethod
    def parse(cls, text: str) -> OpeningHours:
        """From the setting's text; ValueError saying what is wrong."""
        days: list[list[Slot]] = [[] for _ in range(7)]
        for group in (g.strip() for g in text.split(";")):
            if not group:
                continue
            span, _, ranges = group.partition(" ")
            first, _, last = span.strip().lower().partition("-")
            if first not in _DAY_CODES or (last and last not in _DAY_CODES):
                raise ValueError(f"unknown day in {group!r} (mon..sun or lun..dim)")
            start_day, end_day = _DAY_CODES[first], _DAY_CODES[last or first]
            if end_day < start_day:
                raise ValueError(f"days go backwards in {group!r}")
            for part in (r.strip() for r in ranges.split(",")):
                begin, sep, end = part.partition("-")
                try:
                    slot = Slot(_parse_time(begin), _parse_time(end))
                except ValueError as exc:
                    raise ValueError(f"bad time range {part!r} (HH:MM-HH:MM)") from exc
                if not sep or slot.start >= slot.end:
                    raise ValueError(f"bad time range {part!r} (HH:MM-HH:MM, start before end)")
                for day in range(start_day, end_day + 1):
                    days[day].append(slot)
        for slots in days:
            slots.sort()
            for a, b in itertools.pairwise(slots):
                if b.start < a.end:
                    raise ValueError(f"overlapping ranges {a.key} and {b.key}")
        if not any(days):
            raise ValueError("no opening hours at all")
        return cls(tuple(tuple(s) for s in days))

    # Days and slots -------------------------------------------------------------------------------
    def slots_on(self, day: dt.date) -> tuple[Slot, ...]:
        """The slots offered on ``day``: none on a public holiday."""
        return () if holiday_name(day) else self.days[day.weekday()]

    def slot(self, day: dt.date, key: str) -> Slot | None:
        return next((s for s in self.slots_on(day) if s.key == key), None)

    def all_slots(self) -> list[Slot]:
        """Every distinct slot of the week, in order (the form's choices)."""
        return sorted({s for slots in self.days for s in slots})

    def is_open(self, moment: dt.datetime) -> bool:
        local = moment.astimezone(PARIS)
        return any(s.start <= local.time() < s.end for s in self.slots_on(local.date()))

    # Wording ----------------------------------------------------------------------------------------
    @staticmethod
    def _ranges(slots: tuple[Slot, ...]) -> list[tuple[dt.time, dt.time]]:
        """Contiguous slots merged: 9–12, 12–14, 14–18 → 9–18."""
        out: list[tuple[dt.time, dt.time]] = []
        for s in slots:
            if out and out[-1][1] == s.start:
                out[-1] = (out[-1][0], s.end)
            else:
                out.append((s.start, s.end))
        return out

    def day_wording(self, weekday: int) -> str:
        """« de 9 h à 12 h et de 14 h à 18 h »."""
        return " et ".join(f"de {fr_hour(a)} à {fr_hour(b)}" for a, b in self._ranges(self.days[weekday]))

    def describe(self) -> str:
        """The hours for members: « du lundi au vendredi de 9 h à 18 h et le samedi de 9 h à 12 h,
        sauf les jours fériés »."""
        groups: list[list[int]] = []
        for day in range(7):
            if not self.days[day]:
                continue
            if groups and groups[-1][-1] == day - 1 and self.day_wording(groups[-1][-1]) == self.day_wording(day):
                groups[-1].append(day)
            else:
                groups.append([day])
        parts = []
        for group in groups:
            if len(group) == 1:
                who = f"le {DAY_NAMES[group[0]]}"
            elif len(group) == 2:
                who = f"le {DAY_NAMES[group[0]]} et le {DAY_NAMES[group[1]]}"
            else:
                who = f"du {DAY_NAMES[group[0]]} au {DAY_NAMES[group[-1]]}"
            parts.append(f"{who} {self.day_wording(group[0])}")
        listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " et " + parts[-1]
        return f"{listed}, sauf les jours fériés"


DEFAULT_HOURS = OpeningHours.parse(DEFAULT_OPENING_HOURS)
