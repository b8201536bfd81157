"""Replies written for the eye, said for the ear; keys typed on the phone read as the bot reads text."""

from __future__ import annotations

import datetime as dt

import pytest

from channels.voice.speech import for_the_ear, keypad_text
from tests.channels.voice.twiml_check import check_twiml

TODAY = dt.date(2026, 12, 7)


@pytest.mark.parametrize(
    ("written", "said"),
    [
        ("Votre remboursement pharmacie du 27/11/2026 (23,50 €) est payé : 18,80 €, versé le 29 novembre 2026.",
         "Votre remboursement pharmacie du 27 novembre, 23 euros 50, est payé : 18 euros 80, versé le 29 novembre."),
        ("Votre cotisation mensuelle est de 1\u202f234,50 €, prochain appel le 1er mars 2027.",
         "Votre cotisation mensuelle est de 1234 euros 50, prochain appel le 1er mars 2027."),
        ("Un conseiller peut vous rappeler. Choisissez-le ici : https://mutuelle.example/callback. Merci.",
         "Un conseiller peut vous rappeler. Choisissez-le ici sur notre site. Merci."),
        ("Le délai habituel est dépassé. Écrivez « conseiller » pour qu'on vérifie.",
         "Le délai habituel est dépassé. Dites conseiller pour qu'on vérifie."),
        ("Quelle est votre date de naissance ? (JJ/MM/AAAA)",
         "Quelle est votre date de naissance ? Tapez-la sur le clavier de votre téléphone : deux chiffres pour le "
         "jour, deux pour le mois et quatre pour l'année."),
        ("Je vous mets en relation avec un conseiller. Il vous répondra ici, dans cette conversation.",
         "Je vous mets en relation avec un conseiller. Il va vous répondre."),
    ],
)  # fmt: skip
def test_amounts_dates_links_and_wording_for_the_ear(written: str, said: str) -> None:
    assert for_the_ear(written, TODAY) == said


def test_a_list_is_at_most_three_choices_to_type() -> None:
    written = "Lequel vous intéresse ? Répondez par son numéro :\n" + "\n".join(
        f"{n}. {kind} du 0{n}/12/2026 (10,00 €)" for n, kind in enumerate(("lunettes", "pharmacie", "dentiste", "kiné"), 1)
    )
    said = for_the_ear(written, TODAY)
    assert said.startswith("Lequel vous intéresse ? Tapez 1 pour lunettes du 1er décembre, 10 euros, 2 pour ")
    assert "ou 3 pour dentiste du 3 décembre, 10 euros." in said
    assert "kiné" not in said and "4" not in said  # the fourth is not read; it can still be named
    assert "Pour un autre, dites de quoi il s'agit." in said


@pytest.mark.parametrize(
    ("digits", "text"),
    [("12031975", "12/03/1975"), ("31021975", "31021975"), ("01012099", "01012099"), ("0042042", "M0042042"),
     ("123456", "123456"), ("2", "2"), ("1#", "1")],
)  # fmt: skip
def test_keypad(digits: str, text: str) -> None:
    assert keypad_text(digits, TODAY) == text


def test_the_twiml_check_refuses_what_twilio_would_not_run_or_say_in_french() -> None:
    good = ('<?xml version="1.0" encoding="UTF-8"?><Response><Gather action="https://x/voice?step=1" input="speech dtmf" '
            'language="fr-FR"><Say language="fr-FR" voice="Polly.Lea">Bonjour, que puis-je pour vous ?</Say></Gather>'
            "</Response>")  # fmt: skip
    assert check_twiml(good) == ["Bonjour, que puis-je pour vous ?"]
    for bad in (
        good.replace('language="fr-FR" voice', 'language="en-US" voice'),
        good.replace("Bonjour, que puis-je pour vous ?", "Hello, please wait"),
        good.replace("Bonjour, que puis-je pour vous ?", "Payé : 18,80 € de votre dossier"),
        good.replace("<Gather ", "<Gather bogus=\"1\" "),
        good.replace("</Response>", "<Sms>texte</Sms></Response>"),
    ):
        with pytest.raises(AssertionError):
            check_twiml(bad)
