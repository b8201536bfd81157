"""Validation of a callback request: pure, no I/O.

* phone: a French number (mainland or overseas departments), normalised to E.164 with
  ``phonenumbers``: "06 12 34 56 78", "+33 6 12 34 56 78", "0033612345678" are accepted.
* slot: a day and one of the offered time ranges, within opening hours (Monday to Friday
  9h–18h, Saturday 9h–12h, Europe/Paris), not already over, at most 30 days ahead.
* reason: one of the listed topics; an optional comment of at most 500 characters.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from gateway.phones import normalise_phone

PARIS = ZoneInfo("Europe/Paris")
MAX_DAYS_AHEAD = 30
MAX_COMMENT = 500
MAX_NAME = 100

# Offered time ranges; Saturday only the morning one.
SLOTS: dict[str, tuple[dt.time, dt.time]] = {
    "09:00-12:00": (dt.time(9), dt.time(12)),
    "12:00-14:00": (dt.time(12), dt.time(14)),
    "14:00-18:00": (dt.time(14), dt.time(18)),
}
SATURDAY_SLOTS = frozenset({"09:00-12:00"})

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


def validate(data: dict[str, Any], now: dt.datetime | None = None) -> CallbackRequest:
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
        if slot_raw not in SLOTS:
            errors["slot"] = "Choisissez une plage horaire proposée."
        elif day.weekday() == 6:
            errors["date"] = "Nous ne rappelons pas le dimanche."
        elif day.weekday() == 5 and slot_raw not in SATURDAY_SLOTS:
            errors["slot"] = "Le samedi, nous rappelons seulement de 9 h à 12 h."
        else:
            start_t, end_t = SLOTS[slot_raw]
            slot_start = dt.datetime.combine(day, start_t, PARIS)
            slot_end = dt.datetime.combine(day, end_t, PARIS)
            if slot_end <= now:
                errors["date"] = "Ce créneau est déjà passé."
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
