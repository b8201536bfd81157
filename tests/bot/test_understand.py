"""What a message asks beside the intent model: questions kept whole, general questions, small talk."""

from __future__ import annotations

import datetime as dt

import pytest

from bot.actions import understand


@pytest.mark.parametrize(
    ("text", "model", "expected"),
    [
        # A dated status question taken for identity details by the model is still the question.
        ("où en est mon remboursement du 12/11", "give_identity", "reimbursement_status"),
        ("et mon remboursement d'analyses du 21/10 ?", "give_identity", "reimbursement_status"),
        ("ma réclamation du 02/12, où en est-elle ?", "give_identity", "complaint_status"),
        # A complaint-status question is never filing one.
        ("ou en est ma reclamation, je l'ai deposee le 2", "file_complaint", "complaint_status"),
        ("je veux faire une réclamation", "file_complaint", "file_complaint"),
        # General questions need no identity.
        ("kel delai pr 1 reponse a 1 reclamation", "complaint_status", "faq_processing_delays"),
        ("c'est quoi le tiers payant ?", "card_status", "faq_tiers_payant"),
        ("comment adhérer chez vous", "membership_status", "faq_joining"),
        ("comment saisir le médiateur", "faq_mediator", "faq_mediator"),
        ("ou envoyer ma feuille de soins papier", "reimbursement_status", "faq_send_care_sheet"),
        ("ou en est ma feuille de soin", "reimbursement_status", "reimbursement_status"),
        # The model's reading is kept where the words agree.
        ("mon devis optique", "quote_status", "quote_status"),
        ("bonjour", "greet", "greet"),
    ],
)
def test_the_question_asked_is_the_one_acted_on(text: str, model: str, expected: str) -> None:
    assert understand.corrected_intent(model, text) == expected


def test_small_talk_anger_more_and_greetings_in_kind() -> None:
    assert understand.small_talk("merci !") == "thanks"
    assert understand.small_talk("ok") == "ok"
    assert understand.small_talk("M0100002") is None
    assert understand.angry("c'est inadmissible !") and not understand.angry("où en est mon devis")
    assert understand.wants_more("autres") and understand.wants_more("et les autres ?")
    assert not understand.wants_more("mon autre remboursement de lunettes du 3/11 svp")
    assert understand.greeting_in_kind("Bonsoir") == "Bonsoir" and understand.greeting_in_kind("bjr") == "Bonjour"


def test_a_callback_request_keeps_its_moment() -> None:
    monday = dt.date(2026, 12, 7)
    assert understand.callback_moment("pouvez-vous me rappeler demain matin ?", monday) == (
        dt.date(2026, 12, 8),
        "matin",
    )
    assert understand.callback_moment("rappelez moi vendredi après-midi", monday) == (
        dt.date(2026, 12, 11),
        "apres-midi",
    )
    assert understand.callback_moment("rappelez moi lundi", monday) == (dt.date(2026, 12, 14), "")
    assert understand.callback_moment("rappelez moi svp", monday) is None


def test_several_questions_in_one_message() -> None:
    assert understand.status_intents("ma carte et mon devis ?") == ["card_status", "quote_status"]
    assert understand.status_intents("où en est ma réclamation, et mon remboursement de lunettes") == [
        "complaint_status",
        "reimbursement_status",
    ]
    assert understand.status_intents("où en est mon remboursement du 12/11") == ["reimbursement_status"]


@pytest.mark.parametrize(
    "text",
    ["je préfère un code", "envoyez-moi un code", "Envoyez moi un code svp", "je ne veux pas donner ma date de naissance",
     "un code plutôt", "je prefere recevoir un code", "je n'ai pas ma date de naissance"],
)  # fmt: skip
def test_a_code_instead_of_the_birth_date(text: str) -> None:
    assert understand.wants_code(text)


@pytest.mark.parametrize("text", ["12/03/1975", "renvoyez le code", "où en est mon remboursement", "né le 3 mars 85"])
def test_not_asking_for_a_code(text: str) -> None:
    assert not understand.wants_code(text)
