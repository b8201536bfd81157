"""French phone numbers, normalised to E.164 with ``phonenumbers``."""

from __future__ import annotations

import phonenumbers

# Regions whose numbers a French mutuelle deals with: mainland and overseas departments.
FRENCH_REGIONS = frozenset({"FR", "GP", "MQ", "GF", "RE", "YT", "PM", "BL", "MF"})
_TRY_ORDER = ("FR", "RE", "GP", "MQ", "GF", "YT", "PM", "BL", "MF")


def normalise_phone(raw: str) -> str | None:
    """E.164 for a French number; overseas numbers written nationally (0692…) are found too."""
    if not raw or len(raw) > 40:
        return None
    # Overseas departments share the national plan: "0692 12 34 56" is a Réunion mobile.
    for region in _TRY_ORDER:
        try:
            number = phonenumbers.parse(raw, region)
        except phonenumbers.NumberParseException:
            return None
        if phonenumbers.is_valid_number(number) and phonenumbers.region_code_for_number(number) in FRENCH_REGIONS:
            return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
        if raw.lstrip().startswith(("+", "00")):
            return None  # written internationally: the region hint does not apply
    return None
