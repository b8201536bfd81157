"""GSM-7 / UCS-2 detection and segment counts, with known values."""

from __future__ import annotations

import pytest

from channels.sms.encoding import SmsInfo, sms_info

GSM_BASIC_FRENCH = "éèùìòÉàÇ"
NOT_GSM_FRENCH = "êâçîôûëïœ"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", SmsInfo("GSM-7", 0, 0)),
        ("Bonjour", SmsInfo("GSM-7", 1, 7)),
        ("a" * 160, SmsInfo("GSM-7", 1, 160)),
        ("a" * 161, SmsInfo("GSM-7", 2, 161)),
        ("a" * 306, SmsInfo("GSM-7", 2, 306)),
        ("a" * 307, SmsInfo("GSM-7", 3, 307)),
        # Extension characters count two septets.
        ("€", SmsInfo("GSM-7", 1, 2)),
        ("€" * 80, SmsInfo("GSM-7", 1, 160)),
        ("a" * 159 + "€", SmsInfo("GSM-7", 2, 161)),
        ("[{~^|\\}]", SmsInfo("GSM-7", 1, 16)),
        # 152 septets then an escape pair: the pair does not fit the first segment's last septet.
        ("a" * 152 + "€" + "a" * 10, SmsInfo("GSM-7", 2, 164)),
        ("a" * 152 + "€" * 77, SmsInfo("GSM-7", 3, 306)),
        # French: these accents are in the GSM basic table...
        (GSM_BASIC_FRENCH, SmsInfo("GSM-7", 1, 8)),
        ("Votre remboursement a été effectué.", SmsInfo("GSM-7", 1, 35)),
        # ...these are not, and turn the whole text into UCS-2.
        ("ça", SmsInfo("UCS-2", 1, 2)),
        ("Votre cotisation évolue : ça change", SmsInfo("UCS-2", 1, 35)),
        ("ê" * 70, SmsInfo("UCS-2", 1, 70)),
        ("ê" * 71, SmsInfo("UCS-2", 2, 71)),
        ("ê" * 134, SmsInfo("UCS-2", 2, 134)),
        ("ê" * 135, SmsInfo("UCS-2", 3, 135)),
        # Emoji outside the BMP: two UTF-16 code units, never split across segments.
        ("😀", SmsInfo("UCS-2", 1, 2)),
        ("😀" * 35, SmsInfo("UCS-2", 1, 70)),
        ("😀" * 36, SmsInfo("UCS-2", 2, 72)),
        ("😀" * 66, SmsInfo("UCS-2", 2, 132)),
        ("😀" * 67, SmsInfo("UCS-2", 3, 134)),
        # A GSM character mixed with one UCS-2 character: everything is UCS-2.
        ("€ et ç", SmsInfo("UCS-2", 1, 6)),
    ],
)
def test_known_values(text: str, expected: SmsInfo) -> None:
    assert sms_info(text) == expected


@pytest.mark.parametrize("ch", list(GSM_BASIC_FRENCH))
def test_french_accents_in_gsm_basic_table(ch: str) -> None:
    assert sms_info(f"Merci {ch}").encoding == "GSM-7"


@pytest.mark.parametrize("ch", list(NOT_GSM_FRENCH))
def test_french_accents_forcing_ucs2(ch: str) -> None:
    assert sms_info(f"Merci {ch}").encoding == "UCS-2"


def test_typographic_quotes_and_apostrophe_force_ucs2() -> None:
    # Word processors' curly apostrophe is not GSM: a common cause of doubled SMS costs.
    assert sms_info("Aujourd'hui").encoding == "GSM-7"
    assert sms_info("Aujourd’hui").encoding == "UCS-2"
