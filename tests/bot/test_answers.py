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


def test_overdue_claim_says_so_apologises_once_and_offers_an_agent() -> None:
    text = answers.claim_answer(claim(care_date="2026-11-20", status="received"), TODAY)
    assert "Il devait être payé au plus tard le 22 novembre 2026" in text and "nous sommes en retard" in text
    assert text.count("excuser") == 1 and "conseiller" in text and "rappelé" in text
    again = answers.claim_answer(claim(care_date="2026-11-20", status="received"), TODAY, apologise=False)
    assert "excuser" not in again and "conseiller" in again
    assert "(télétransmise (48 h))" not in text  # the old doubled parentheses


def test_expected_payment_counts_from_the_day_the_claim_was_received() -> None:
    # Care on 20 November, received on paper on 28 November: 5 days from receipt, not from care.
    late_care = claim(care_date="2026-11-20", received_date="2026-11-28", teletransmitted=False, status="received")
    assert answers.expected_payment(late_care) == dt.date(2026, 12, 3)
    text = answers.claim_answer(late_care, dt.date(2026, 12, 2))
    assert "Paiement prévu au plus tard le 3 décembre 2026" in text and "réception le 28 novembre 2026" in text
    # A record from before the field existed: the care date stands in for it.
    assert answers.expected_payment(claim(care_date="2026-11-20")) == dt.date(2026, 11, 22)


SIX = [
    claim(id="S1", care_date="2026-08-24", kind="prothèse dentaire", amount_eur="800.00", status="in_progress"),
    claim(id="S2", care_date="2026-12-01", kind="prothèse dentaire", amount_eur="600.00"),
    claim(id="S3", care_date="2026-10-21", kind="analyses de laboratoire", amount_eur="45.00", status="paid"),
    claim(id="S4", care_date="2026-11-12", kind="kinésithérapie", amount_eur="30.00", status="received"),
    claim(id="S5", care_date="2026-11-20", kind="lunettes", amount_eur="350.00", status="paid"),
    claim(id="S6", care_date="2026-11-25", kind="pharmacie", amount_eur="12.00", status="paid"),
]


@pytest.mark.parametrize(
    ("asked", "ids"),
    [
        ("celui de la prothèse dentaire du 24 août", ["S1"]),  # the oldest of six, not among the latest five
        ("et mon remboursement d'analyses du 21/10 ?", ["S3"]),
        ("où en est mon remboursement du 12/11", ["S4"]),
        ("et le kiné ?", ["S4"]),
        ("mes lunettes", ["S5"]),
        ("celui d'août", ["S1"]),
        ("le remboursement de 350 €", ["S5"]),
        ("le S3 svp", ["S3"]),
        ("ma prothèse dentaire", ["S2", "S1"]),  # two: newest first, to choose from
    ],
)
def test_every_claim_is_found_by_date_kind_amount_or_reference(asked: str, ids: list[str]) -> None:
    found = answers.find(SIX, asked, dates=("care_date",), kind="kind", amounts=("amount_eur",), today=TODAY)
    assert found.named and not found.missed
    assert [c["id"] for c in found.matches] == ids


def test_a_named_date_that_matches_none_is_said_with_the_nearest() -> None:
    found = answers.find(SIX, "mon remboursement du 13/11", dates=("care_date",), kind="kind",
                         amounts=("amount_eur",), today=TODAY)  # fmt: skip
    assert found.missed and found.what == "du 13 novembre"
    assert [c["id"] for c in found.matches] == ["S4", "S5", "S6"]
    nothing_named = answers.find(SIX, "où en est mon remboursement", dates=("care_date",), kind="kind",
                                 amounts=(), today=TODAY)  # fmt: skip
    assert not nothing_named.named and len(nothing_named.matches) == 6
    listing = answers.claims_choice(nothing_named.matches[5:], first=6, more=0)
    assert listing.splitlines()[1].startswith("6. prothèse dentaire du 24/08/2026")


def test_late_complaint_and_membership_documents_are_said_to_be_late() -> None:
    late = {"id": "REC-9", "received_date": "2026-11-20", "urgent": False, "due_date": "2026-11-30",
            "status": "open", "answered_date": ""}  # fmt: skip
    text = answers.complaints_answer([late], today=TODAY)
    assert "nous devions vous répondre au plus tard le 30 novembre 2026 : ce délai est dépassé" in text
    assert text.count("excuser") == 1 and "conseiller" in text
    docs = answers.membership_answer(
        [{"received_date": "2026-11-15", "acknowledged_date": "2026-11-16", "documents_sent_date": ""}], today=TODAY
    )
    assert "au plus tard le 25 novembre 2026 : nous sommes en retard" in docs and "conseiller" in docs


def test_why_the_contribution_changes() -> None:
    member = {"contribution_eur": "64.2", "contribution_call_date": "2027-01-05", "cover_level": "confort",
              "birth_date": "1970-03-12"}  # fmt: skip
    text = answers.contribution_answer(member, why=True, today=TODAY)
    assert "tranche d'âge (56–65 ans ; vous y êtes entré(e) cette année" in text
    assert "formule « confort »" in text and "1er janvier" in text
    older = answers.contribution_answer({**member, "birth_date": "1940-01-01"}, why=True, today=TODAY)
    assert "(76 ans et plus, inchangée cette année)" in older


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
    assert answers.complaints_answer(complaints, today=TODAY) == (
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
