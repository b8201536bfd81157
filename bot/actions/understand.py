"""What a message asks, beside the intent model: plain rules over the folded text.

The intent model reads single messages well; these rules keep a conversation on its track where
one message is not enough: a status question with a date in it (« où en est mon remboursement du
12/11 ») is a question, not identity details; « où en est ma réclamation » is never filing one; a
general question (delays, third-party payment, joining, the mediator) needs no identity; small talk
and anger are answered in kind; « DETAIL » answers a message sent first. No Rasa and no Redis here:
tested directly.

Two word rules live with the gateway instead (``members/links.py``), because their messages must be read
before the model, whose rules answer them with a plain response no action sees: the answer to « reconnaître
ce compte Telegram ? » (« oui » is ``affirm``) and « oubliez ce compte » / « délier mon compte Telegram »
(read as ``affirm`` and as a question on delays).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

from members import detail_word

STATUS_INTENTS = (
    "reimbursement_status", "complaint_status", "membership_status", "card_status", "quote_status",
    "contribution_question", "file_complaint",
)  # fmt: skip


def fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", (text or "").lower())
    return " ".join("".join(c for c in text if not unicodedata.combining(c)).split())


def _any(pattern: str, text: str) -> bool:
    return re.search(pattern, text) is not None


_REIMB = r"\b(rembour\w*|rembours\w*|rbt|remb|rembt|rembrsmt|virement|decompte)\b"
_COMPLAINT = r"\b(reclam\w*|plainte|litige|contestation|rec-\d{4}-\w+)\b"
_QUOTE = r"\bdevis\b"
# Kinds of care: a message naming one (« et mes lunettes du 20/11 ? ») asks about a claim.
_CARE = (
    r"\b(lunettes?|kine\w*|dentiste|dentaire|prothese|pharmacie|medicaments?|analyses?|labo\w*|consult\w*"
    r"|generaliste|specialiste|ophtalmo|osteo\w*|hospitalisation|hopital|orthodont\w*|semelles|soins?)\b"
)
_CARD = r"\bcartes?\b(?! vitale)"
_MEMBERSHIP = r"\b(adhesion|inscription|bulletin d.?adhesion)\b"
_CONTRIB = r"\b(cotis\w*|prelevement mensuel|tarif)\b"
_STATUS_CUE = (
    r"(\bou en\b|\bou (elle|il) en est\b|\ben est\b|\bsuivi\b|\bstatut\b|\bdes nouvelles\b|\bdu nouveau\b|\bavance\b"
    r"|\breponse\b|\btraite\w*\b|\bcloture\w*\b|\bdu \d|\bdu (1er|\d{1,2}) \w+|\brec-\d{4}|\bdeja\b|\btoujours\b|\btjs?\b"
    r"|\bvous en etes\b|\bquand\b|\bpas de nouvelles\b|\ben cours\b|\bmon litige\b|\bma (reclam|plainte)"
    r"|\bmes (reclam|plainte))"
)
_FILE_CUE = r"\b(deposer|faire|ouvrir|porter|formuler|nouvelle|contester|conteste|je reclame)\b"
_GENERAL_CUE = r"\b(en general|en moyenne|normalement|d.?habitude|habituel\w*|c.?est quoi|comment)\b"
_POSSESSIVE = r"\b(ma|mon|mes|m.?avez|j.?ai|je n.?ai)\b"


def status_intent(text: str) -> str | None:
    """The status question a message asks, read from its words (None when it asks none)."""
    t = fold(text)
    if _any(_COMPLAINT, t):
        if _any(_STATUS_CUE, t) or not _any(_FILE_CUE, t):
            return "complaint_status" if _any(_STATUS_CUE, t) else None
        return "file_complaint"
    if _any(_QUOTE, t):
        return "quote_status"
    if _any(_REIMB, t):
        return "reimbursement_status"
    if _any(_CONTRIB, t):
        return "contribution_question"
    if _any(_MEMBERSHIP, t) and not _any(r"\b(comment|adherer)\b", t):
        return "membership_status"
    if _any(_CARD, t):
        return "card_status"
    if _any(_CARE, t) and _any(_STATUS_CUE + r"|\bmes\b|\bmon\b|\bma\b|\bpour\b|\bcelui\b|\bcelle\b", t):
        return "reimbursement_status"
    return None


def status_intents(text: str) -> list[str]:
    """Every status question a message asks, in order (« ma carte et mon devis ? » asks two)."""
    found: list[str] = []
    for part in re.split(r"\bet\b|[,;?!]|\bpuis\b|\baussi\b", fold(text)):
        intent = status_intent(part)
        if intent and intent not in found:
            found.append(intent)
    return found


def corrected_intent(intent: str, text: str) -> str:
    """The intent the conversation acts on: the model's, put right where the words say otherwise
    (a complaint-status question taken for filing one; a general question taken for the member's own)."""
    general = general_question(text)
    if general:
        return general
    words = status_intent(text)
    if intent == "file_complaint" and words == "complaint_status":
        return "complaint_status"
    if intent not in STATUS_INTENTS and words:
        return words
    return intent


def general_question(text: str) -> str | None:
    """A general question answered the same for everyone, without identity."""
    t = fold(text)
    own = _any(_POSSESSIVE, t) and not _any(r"\b(en general|en moyenne|normalement|d.?habitude)\b", t)
    if _any(r"\b(delais?|combien de (temps|jours)|en combien de)\b", t) and not own:
        return "faq_processing_delays"
    if _any(r"\b(k|qu)el delai\b", t) and _any(r"\b(une?|1)\b", t):
        return "faq_processing_delays"
    if _any(r"\btiers[ -]payant\b", t) and _any(_GENERAL_CUE + r"|\bavancer\b|\bfonctionne\b|\bmarche\b", t):
        if not _any(r"\bma carte\b", t):
            return "faq_tiers_payant"
    if _any(r"\b(adherer|souscrire|devenir (adherent|membre)|m.?inscrire)\b", t) and not _any(r"\bmon adhesion\b", t):
        return "faq_joining"
    if _any(r"\bmediat(eur|rice|ion)\b", t):
        return "faq_mediator"
    if (
        _any(r"\bfeuilles? de soins?\b|\bjustificatifs?\b|\bteletransmission\b", t)
        and _any(r"\b(comment|envoyer|transmettre|marche|adresse)\b", t)
        and not _any(r"\bou en\b|\btraitee?s?\b|\bremboursee?s?\b|\brecue?s?\b", t)
    ):
        return "faq_send_care_sheet"
    return None


_WANTS_CODE = (
    r"\b(prefere\w* (un|le|recevoir un|par) code|envo\w*(-moi| moi)? (un|le|plutot un) code|(un|par) code plutot"
    r"|code (a la place|plutot)|plutot (un|par) code|recevoir un code|avec un code|par sms plutot)\b"
    r"|\b(veux|voudrais|souhaite|peux|prefere) pas (donner|dire|communiquer|indiquer|ecrire) ma date"
    r"|\bpas (ma|de) date de naissance\b"
)


def wants_code(text: str) -> bool:
    """Asked the birth date, the member prefers a one-time code (« je préfère un code », « envoyez-moi un
    code », « je ne veux pas donner ma date de naissance »)."""
    return _any(_WANTS_CODE, fold(text).replace("n'", "").replace("ne ", ""))


SMALL_TALK = {
    "thanks": r"^(merci|mrc|mci|thx|je vous remercie)\b",
    "ok": r"^(ok|okay|oki|d.?accord|dac|ca marche|tres bien|entendu|parfait|super|top)\b[ !.]*$",
    "greet": r"^(bonjour|bonsoir|bjr|bsr|salut|slt|hello|coucou|re ?bonjour)\b[ !.,]*$",
    "wait": r"^(attendez|un instant|une seconde|2 sec|je cherche|je regarde|minute)\b",
}


def small_talk(text: str) -> str | None:
    t = fold(text)
    for kind, pattern in SMALL_TALK.items():
        if _any(pattern, t):
            return kind
    return None


_ANGRY = (
    r"\b(inadmissible|inacceptable|scandal\w*|honte\w*|honteux|ras le bol|marre|furieu\w*|en colere|"
    r"n.?importe quoi|lamentable|pas normal|c.?est abuse|abusé|exasper\w*|incompeten\w*|nul|nuls|degoute\w*)\b"
)


def angry(text: str) -> bool:
    return _any(_ANGRY, fold(text))


ANGRY_ACK = "Je comprends votre mécontentement et je suis désolé pour ce désagrément."

MORE = r"^(et )?(les |d.?)?(autres?|suite|suivants?|precedent\w*|plus anciens?|encore|voir plus)\b"


def wants_more(text: str) -> bool:
    return _any(MORE, fold(text))


def greeting_in_kind(text: str) -> str:
    """« Bonsoir » for « Bonsoir »/« bsr », else « Bonjour »."""
    return "Bonsoir" if _any(r"\b(bonsoir|bsr|bonne soiree)\b", fold(text)) else "Bonjour"


WEEKDAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")


def callback_moment(text: str, now: dt.date) -> tuple[dt.date, str] | None:
    """« demain matin », « lundi après-midi », « aujourd'hui » → (day, "matin" / "apres-midi" / "")."""
    folded = fold(text)
    day: dt.date | None = None
    if re.search(r"\bapres[- ]demain\b", folded):
        day = now + dt.timedelta(days=2)
    elif re.search(r"\bdemain\b", folded):
        day = now + dt.timedelta(days=1)
    elif re.search(r"\b(aujourd.?hui|cet apres[- ]midi|ce matin|cet aprem)\b", folded):
        day = now
    else:
        for i, name in enumerate(WEEKDAYS):
            if re.search(rf"\b{name}\b", folded):
                day = now + dt.timedelta(days=(i - now.weekday()) % 7 or 7)
    if day is None:
        return None
    period = (
        "matin"
        if re.search(r"\bmatin\b", folded)
        else "apres-midi"
        if re.search(r"\bapres[- ]?midi|aprem\b", folded)
        else ""
    )
    return day, period


def detail_request(text: str) -> bool:
    """The message is « DETAIL », the answer a message the mutuelle sent first asks for."""
    return detail_word.is_detail(text)
