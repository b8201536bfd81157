"""The one-calendar-month rule, send windows and how long a campaign takes to send.

A member must be told of a change at least one calendar month before it applies: the latest
notice date is the effective date minus one calendar month, clamped to the end of the month
(31 March → 28 or 29 February), as a Europe/Paris calendar date. A notice sent on that date still
counts; a notice sent the day after does not.

Notices go out only inside the send window: given hours, given weekdays, never on a Sunday or
a French public holiday, all in Europe/Paris (daylight-saving changes included).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays
from dateutil.relativedelta import relativedelta

PARIS = ZoneInfo("Europe/Paris")
DAY_NAMES = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
MONTHS = (
    "janvier", "février", "mars", "avril", "mai", "juin",
    "juillet", "août", "septembre", "octobre", "novembre", "décembre",
)  # fmt: skip


def latest_notice_date(effective: dt.date) -> dt.date:
    """Effective date minus one calendar month, clamped to the month's end (31/03 → 28 or 29/02)."""
    notice: dt.date = effective - relativedelta(months=1)
    return notice


def fr_date(day: dt.date) -> str:
    return f"{'1er' if day.day == 1 else day.day} {MONTHS[day.month - 1]} {day.year}"


@lru_cache(maxsize=64)
def _public_holidays(year: int) -> frozenset[dt.date]:
    return frozenset(holidays.country_holidays("FR", years=year))


def is_public_holiday(day: dt.date) -> bool:
    return day in _public_holidays(day.year)


@dataclass(frozen=True, slots=True)
class SendWindow:
    """Hours [start, end) on the given ISO weekdays (1 = Monday); never Sundays or public holidays."""

    start: dt.time = dt.time(9, 0)
    end: dt.time = dt.time(19, 0)
    weekdays: tuple[int, ...] = (1, 2, 3, 4, 5, 6)

    def __post_init__(self) -> None:
        if not self.start < self.end:
            raise ValueError("la fenêtre d'envoi doit commencer avant de finir")
        if not self.weekdays or any(d not in range(1, 7) for d in self.weekdays):
            raise ValueError("jours d'envoi : du lundi (1) au samedi (6), jamais le dimanche")

    def open_on(self, day: dt.date) -> bool:
        return day.isoweekday() in self.weekdays and not is_public_holiday(day)

    def contains(self, moment: dt.datetime) -> bool:
        local = moment.astimezone(PARIS)
        return self.open_on(local.date()) and self.start <= local.time() < self.end

    def next_open(self, moment: dt.datetime) -> dt.datetime:
        """``moment`` if it is inside the window, else the next opening (aware, Europe/Paris)."""
        local = moment.astimezone(PARIS)
        if self.contains(local):
            return local
        day = local.date()
        if self.open_on(day) and local.time() < self.start:
            return dt.datetime.combine(day, self.start, PARIS)
        for _ in range(400):
            day += dt.timedelta(days=1)
            if self.open_on(day):
                return dt.datetime.combine(day, self.start, PARIS)
        raise ValueError("aucun jour d'envoi possible dans l'année")

    def close_of(self, moment: dt.datetime) -> dt.datetime:
        local = moment.astimezone(PARIS)
        return dt.datetime.combine(local.date(), self.end, PARIS)

    def finish_time(self, start: dt.datetime, seconds: float) -> dt.datetime:
        """When ``seconds`` of sending that began at ``start`` ends, counting only open hours."""
        at = self.next_open(start)
        left = seconds
        while True:
            available = (self.close_of(at) - at).total_seconds()
            if left <= available:
                return at + dt.timedelta(seconds=left)
            left -= available
            at = self.next_open(self.close_of(at) + dt.timedelta(seconds=1))

    def describe(self) -> str:
        days = ", ".join(DAY_NAMES[d - 1] for d in self.weekdays)
        return f"{self.start:%H:%M}–{self.end:%H:%M}, {days}, hors jours fériés (heure de Paris)"


def end_of_day(day: dt.date) -> dt.datetime:
    """The last instant of a Paris calendar day (a notice at that instant is on time)."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0, 0), PARIS) - dt.timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Estimate:
    seconds: float
    finish: dt.datetime
    per_channel: dict[str, int]


def estimate(counts: dict[str, int], rates: dict[str, float], start: dt.datetime, window: SendWindow) -> Estimate:
    """How long sending takes: channels send in parallel, each at its provider's rate limit."""
    seconds = 0.0
    for channel, count in counts.items():
        rate = rates.get(channel) or 1.0
        seconds = max(seconds, math.ceil(count / rate))
    return Estimate(seconds=seconds, finish=window.finish_time(start, seconds), per_channel=dict(counts))
