"""Opt-out / opt-in keyword recognition (pure)."""

from __future__ import annotations

import pytest

from channels.sms.encoding import sms_info
from channels.sms.keywords import OPT_IN_REPLY, OPT_OUT_REPLY, fold, match


@pytest.mark.parametrize(
    ("body", "action", "confirmed_by"),
    [
        ("STOP", "optout", "twilio"),
        ("stop", "optout", "twilio"),
        ("  Stop\n", "optout", "twilio"),
        ("Stop.", "optout", "gateway"),
        ("STOP!!!", "optout", "gateway"),
        ("« STOP »", "optout", "gateway"),
        ("Stöp", "optout", "gateway"),
        ("QUIT", "optout", "twilio"),
        ("cancel", "optout", "twilio"),
        ("ARRET", "optout", "gateway"),
        ("ARRÊT", "optout", "gateway"),
        ("arrêt", "optout", "gateway"),
        ("Arrêtez !", "optout", "gateway"),
        ("désabonnement", "optout", "gateway"),
        ("START", "optin", "twilio"),
        ("Unstop", "optin", "twilio"),
        ("démarrer", "optin", "gateway"),
        ("DEMARRER", "optin", "gateway"),
        ("YES", "optin_if_opted_out", "twilio"),
        ("Yes!", "optin_if_opted_out", "gateway"),
        ("HELP", "help", "twilio"),
    ],
)
def test_keywords(body: str, action: str, confirmed_by: str) -> None:
    keyword = match(body)
    assert keyword is not None
    assert (keyword.action, keyword.confirmed_by) == (action, confirmed_by)


@pytest.mark.parametrize(
    "body",
    [
        "",
        "   ",
        "...",
        "stop svp",
        "STOP STOP",
        "je ne veux pas que ça stoppe",
        "stopper",
        "arrêt de travail",
        "oui",
        "non",
        "STOP-ALL",
        "stop" * 20,
        "Bonjour, où en est mon remboursement ?",
    ],
)
def test_not_keywords(body: str) -> None:
    assert match(body) is None


def test_twilio_advanced_opt_out_type_wins() -> None:
    keyword = match("ANNULER", "STOP")
    assert keyword is not None and (keyword.action, keyword.confirmed_by) == ("optout", "twilio")
    keyword = match("OUI", "START")
    assert keyword is not None and keyword.action == "optin"
    assert match("Bonjour", "") is None


def test_fold() -> None:
    assert fold("  « Arrêt ! »  ") == "arret"
    assert fold("DÉSINSCRIRE.") == "desinscrire"


def test_confirmations_are_french_single_gsm_segment() -> None:
    for reply in (OPT_OUT_REPLY, OPT_IN_REPLY):
        info = sms_info(reply)
        assert (info.encoding, info.segments) == ("GSM-7", 1)
    assert "START" in OPT_OUT_REPLY and "STOP" in OPT_IN_REPLY
