"""The bot's wording for a verified member: what the member reads, from the records as stored."""

from __future__ import annotations

import datetime as dt

import pytest

from bot.actions import answers

TODAY = dt.date(2026, 12, 2)


def claim(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": "S1", "member": "M0000042", "care_date": "2026-11-30", "kind": "pharmacie", "amount_eur": "23.50",
        "reimbursed_eur": "", "status": "in_progress", "payment_date": "", "teletransmitted": True,
    }  # fmt: skip
    return {**base, **over}


def test_french_dates_and_amounts() -> None:
    assert answers.fr_date("2027-01-01") == "1er janvier 2027"
    assert answers.fr_date("2026-08-15") == "15 août 2026"
    assert answers.fr_date("2026-08-15", short=True) == "15/08/2026"
    assert answers.fr_date("not a date") == "date inconnue"
    assert answers.euros("1234.5") == "1\u202f234,50 €"
    assert answers.euros("18.8") == "18,80 €"
    assert answers.euros("") == "montant inconnu"


def test_paid_claim_gives_amount_and_payment_date() -> None:
    text = answers.claim_answer(claim(status="paid", reimbursed_eur="18.80", payment_date="2026-12-01"), TODAY)
    assert (
        text
        == "Votre remboursement pharmacie du 30 novembre 2026 (23,50 €) est payé : 18,80 €, versé le 1er décembre 2026."
    )


@pytest.mark.parametrize(
    ("tele", "expected"),
    [(True, "2 décembre 2026"), (False, "5 décembre 2026")],  # care on 30 Nov: 48 h, or 5 days on paper
)
def test_claim_in_progress_gives_the_committed_date(tele: bool, expected: str) -> None:
    text = answers.claim_answer(claim(teletransmitted=tele), TODAY)
    assert f"Paiement prévu au plus tard le {expected}" in text
    assert ("48 h" in text) is tele and ("5 jours" in text) is not tele


def test_overdue_claim_says_so_and_offers_an_agent() -> None:
    text = answers.claim_answer(claim(care_date="2026-11-20", status="received"), TODAY)
    assert "dépassé depuis le 22 novembre 2026" in text and "conseiller" in text


def test_sms_answers_are_short() -> None:
    long = answers.claim_answer(claim(), TODAY)
    brief = answers.claim_answer(claim(), TODAY, short=True)
    assert len(brief) < len(long) and len(brief) <= 160
    assert "02/12/2026" in brief


def test_which_claim_by_number_date_or_kind() -> None:
    claims = [claim(id="S1"), claim(id="S2", kind="lunettes", care_date="2026-11-03")]
    assert answers.pick_claim("2", claims)["id"] == "S2"
    assert answers.pick_claim("le 1", claims)["id"] == "S1"
    assert answers.pick_claim("celui du 03/11", claims)["id"] == "S2"
    assert answers.pick_claim("mes lunettes", claims)["id"] == "S2"
    assert answers.pick_claim("7", claims) is None
    assert answers.pick_claim("aucune idée", claims) is None
    listing = answers.claims_choice(claims)
    assert "1. pharmacie du 30/11/2026 (23,50 €)" in listing and "2. lunettes du 03/11/2026" in listing


def test_complaints_cards_quotes_membership_contribution() -> None:
    complaints = [{"id": "REC-1", "received_date": "2026-11-30", "urgent": True, "due_date": "2026-12-03",
                   "status": "open", "answered_date": ""}]  # fmt: skip
    assert answers.complaints_answer(complaints) == (
        "Réclamation REC-1 du 30 novembre 2026 : en cours d'instruction (urgente), réponse au plus tard le 3 décembre 2026."
    )
    assert "aucune réclamation" in answers.complaints_answer([])
    assert answers.card_answer([{"status": "sent", "dispatch_date": "2026-11-28"}]) == (
        "Votre carte de tiers payant a été envoyée par courrier le 28 novembre 2026."
    )
    assert "fabrication" in answers.card_answer([{"status": "in_production", "dispatch_date": ""}])
    quote = {"kind": "dentaire", "received_date": "2026-11-15", "status": "accepted", "out_of_pocket_eur": "120"}
    assert (
        answers.quotes_answer([quote])
        == "Devis dentaire du 15 novembre 2026 : accepté, reste à charge estimé 120,00 €."
    )
    assert "au plus tard le 25 novembre 2026" in answers.membership_answer(
        [{"received_date": "2026-11-15", "acknowledged_date": "", "documents_sent_date": ""}]
    )
    member = {"contribution_eur": "64.2", "contribution_call_date": "2027-01-05", "cover_level": "confort"}
    assert answers.contribution_answer(member) == (
        "Votre cotisation mensuelle est de 64,20 €, prochain appel le 5 janvier 2027. Formule : confort."
    )


def test_complaint_filed_gives_reference_and_due_date() -> None:
    text = answers.complaint_filed("REC-2026-B000001", dt.date(2026, 12, 5), True)
    assert text.startswith("Votre réclamation urgente est enregistrée sous la référence REC-2026-B000001.")
    assert "au plus tard le 5 décembre 2026" in text
