"""Validation of a callback request: pure, no I/O.

* phone: a French number (mainland or overseas departments), normalised to E.164 with
  ``phonenumbers``: "06 12 34 56 78", "+33 6 12 34 56 78", "0033612345678" are accepted.
* slot: a day and one of the time ranges the opening hours offer that day (``OPENING_HOURS``,
  gateway/hours.py: by default Monday to Friday 9h–18h, Saturday 9h–12h, Europe/Paris; never on a
  French public holiday), not already over, at most 30 days ahead.
* reason: one of the listed topics; an optional comment of at most 500 characters.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from gateway.hours import DAY_NAMES, DEFAULT_HOURS, OpeningHours, holiday_name
from gateway.phones import normalise_phone

PARIS = ZoneInfo("Europe/Paris")
MAX_DAYS_AHEAD = 30
MAX_COMMENT = 500
MAX_NAME = 100

REASONS: dict[str, str] = {
    "remboursement": "Un remboursement",
    "reclamation": "Une réclamation",
    "adhesion": "Mon adhésion",
    "devis": "Un devis (optique, dentaire)",
    "cotisation": "Ma cotisation",
    "carte": "Ma carte de tiers payant",
    "autre": "Autre demande",
}


class ValidationError(ValueError):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class CallbackRequest:
    phone: str  # E.164
    slot_start: dt.datetime  # aware, Europe/Paris
    slot_end: dt.datetime
    reason: str
    comment: str
    name: str

    def fingerprint(self) -> str:
        """What makes two submissions the same request (for Idempotency-Key replays)."""
        parts = (
            self.phone,
            self.slot_start.isoformat(),
            self.slot_end.isoformat(),
            self.reason,
            self.comment,
            self.name,
        )
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()

    def summary(self) -> str:
        return f"{REASONS[self.reason]}" + (f" : {self.comment}" if self.comment else "")


def _text(data: dict[str, Any], name: str) -> str:
    value = data.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def validate(
    data: dict[str, Any], now: dt.datetime | None = None, hours: OpeningHours = DEFAULT_HOURS
) -> CallbackRequest:
    """A callback request from submitted fields, or ValidationError with a French message per field."""
    now = (now or dt.datetime.now(PARIS)).astimezone(PARIS)
    errors: dict[str, str] = {}

    phone_raw = _text(data, "phone")
    phone = normalise_phone(phone_raw) if phone_raw else None
    if not phone_raw:
        errors["phone"] = "Indiquez le numéro auquel vous joindre."
    elif phone is None:
        errors["phone"] = "Ce numéro n'est pas un numéro de téléphone français valide."

    slot_start = slot_end = None
    day_raw, slot_raw = _text(data, "date"), _text(data, "slot")
    try:
        day = dt.date.fromisoformat(day_raw)
    except ValueError:
        errors["date"] = "Choisissez un jour (format AAAA-MM-JJ)."
    else:
        offered = {slot.key for slot in hours.all_slots()}
        holiday = holiday_name(day)
        slot = hours.slot(day, slot_raw)
        if slot_raw not in offered:
            errors["slot"] = "Choisissez une plage horaire proposée."
        elif holiday:
            errors["date"] = (
                f"Le {day:%d/%m/%Y} est un jour férié ({holiday}) : nous ne rappelons pas ce jour-là. "
                "Choisissez un autre jour."
            )
        elif not hours.days[day.weekday()]:
            errors["date"] = f"Nous ne rappelons pas le {DAY_NAMES[day.weekday()]}. Choisissez un autre jour."
        elif slot is None:
            name = DAY_NAMES[day.weekday()]
            errors["slot"] = f"Le {name}, nous rappelons seulement {hours.day_wording(day.weekday())}."
        else:
            slot_start = dt.datetime.combine(day, slot.start, PARIS)
            slot_end = dt.datetime.combine(day, slot.end, PARIS)
            if slot_end <= now:
                errors["date"] = "Ce créneau est déjà passé : choisissez un créneau à venir."
            elif day > now.date() + dt.timedelta(days=MAX_DAYS_AHEAD):
                errors["date"] = f"Choisissez un jour dans les {MAX_DAYS_AHEAD} prochains jours."

    reason = _text(data, "reason")
    if reason not in REASONS:
        errors["reason"] = "Choisissez l'objet de votre demande."
    comment = _text(data, "comment")
    if len(comment) > MAX_COMMENT:
        errors["comment"] = f"Votre message dépasse {MAX_COMMENT} caractères."
    name = _text(data, "name")
    if len(name) > MAX_NAME:
        errors["name"] = f"Le nom dépasse {MAX_NAME} caractères."

    if errors:
        raise ValidationError(errors)
    assert phone and slot_start and slot_end
    return CallbackRequest(phone, slot_start, slot_end, reason, comment, name)
