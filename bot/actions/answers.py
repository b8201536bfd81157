"""What the bot says about a verified member's records, in plain French.

Pure functions over the records as stored in Redis (JSON with ISO dates, see
``members/records.py``): no Rasa and no Redis here, so the wording is tested directly.
``short`` answers (SMS) drop what the member can do without, to stay within a segment or two.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

Record = Mapping[str, Any]

MONTHS = (
    "janvier", "février", "mars", "avril", "mai", "juin",
    "juillet", "août", "septembre", "octobre", "novembre", "décembre",
)  # fmt: skip

NNBSP = "\u202f"

# The mutuelles' commitments (DESIGN.md): 48 h for tele-transmitted claims, 5 days on paper.
TELE_DAYS = 2
PAPER_DAYS = 5

CLAIM_STATUS = {
    "received": "bien reçu, en attente de traitement",
    "in_progress": "en cours de traitement",
    "paid": "payé",
    "rejected": "refusé",
}
COMPLAINT_STATUS = {"open": "en cours d'instruction", "answered": "traitée, réponse envoyée", "closed": "clôturée"}
QUOTE_STATUS = {"received": "reçu", "in_review": "en cours d'étude", "accepted": "accepté", "refused": "refusé"}


def parse_date(value: Any) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def fr_date(value: dt.date | str | None, *, short: bool = False) -> str:
    """« 1er mars 2027 », or « 01/03/2027 » when short."""
    day = value if isinstance(value, dt.date) else parse_date(value)
    if day is None:
        return "date inconnue"
    if short:
        return day.strftime("%d/%m/%Y")
    return f"{'1er' if day.day == 1 else day.day} {MONTHS[day.month - 1]} {day.year}"


def euros(value: Any) -> str:
    """« 1 234,50 € » (narrow no-break space between thousands, as French typography wants)."""
    try:
        amount = Decimal(str(value)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        return "montant inconnu"
    units, _, cents = f"{amount:,.2f}".partition(".")
    return units.replace(",", NNBSP) + "," + cents + " €"


def expected_payment(claim: Record) -> dt.date | None:
    """The date the commitments give: care date + 48 h tele-transmitted, + 5 days on paper."""
    care = parse_date(claim.get("care_date"))
    if care is None:
        return None
    return care + dt.timedelta(days=TELE_DAYS if _truthy(claim.get("teletransmitted")) else PAPER_DAYS)


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "1", "oui", "yes")


def claim_label(claim: Record, *, short: bool = False) -> str:
    return f"{claim.get('kind') or 'soin'} du {fr_date(claim.get('care_date'), short=short)} ({euros(claim.get('amount_eur'))})"


def recent_claims(claims: Iterable[Record], limit: int = 5) -> list[Record]:
    """Most recent care first."""
    return sorted(claims, key=lambda c: str(c.get("care_date") or ""), reverse=True)[:limit]


def claim_answer(claim: Record, today: dt.date, *, short: bool = False) -> str:
    label = claim_label(claim, short=short)
    status = str(claim.get("status") or "")
    if status == "paid":
        text = f"Votre remboursement {label} est payé : {euros(claim.get('reimbursed_eur'))}"
        paid_on = claim.get("payment_date")
        text += f", versé le {fr_date(paid_on, short=short)}." if paid_on else "."
        return text
    if status == "rejected":
        text = f"Votre demande de remboursement {label} a été refusée."
        return text if short else text + " Un conseiller peut vous en expliquer le motif si vous le souhaitez."
    expected = expected_payment(claim)
    state = CLAIM_STATUS.get(status, "en cours de traitement")
    how = "télétransmise (48 h)" if _truthy(claim.get("teletransmitted")) else "sur feuille papier (5 jours)"
    text = f"Votre remboursement {label} est {state}."
    if expected is None:
        return text
    if expected >= today:
        text += f" Paiement prévu au plus tard le {fr_date(expected, short=short)}"
        return text + ("." if short else f", délai de notre engagement pour une demande {how}.")
    text += f" Le délai habituel ({how}) est dépassé depuis le {fr_date(expected, short=short)}"
    return text + (". Écrivez « conseiller » pour qu'on vérifie." if not short else ". Tapez CONSEILLER.")


def claims_choice(claims: Sequence[Record], *, short: bool = False) -> str:
    lines = [f"{i}. {claim_label(c, short=True)}" for i, c in enumerate(claims, 1)]
    head = (
        "Quel remboursement ? Répondez par son numéro :"
        if short
        else ("Vous avez plusieurs remboursements récents. Lequel vous intéresse ? Répondez par son numéro :")
    )
    return head + "\n" + "\n".join(lines)


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in text if not unicodedata.combining(c))


_DATE = re.compile(r"\b(\d{1,2})[/.-](\d{1,2})(?:[/.-](\d{2,4}))?\b")


def pick_claim(text: str, claims: Sequence[Record]) -> Record | None:
    """The claim a reply names: its number in the list, its care date, or a word of its kind."""
    folded = _fold(text).strip()
    number = re.fullmatch(r"(?:n[o°]?\s*|numero\s*|le\s*)?(\d{1,2})\s*[.)]?", folded)
    if number and 1 <= int(number.group(1)) <= len(claims):
        return claims[int(number.group(1)) - 1]
    found = _DATE.search(folded)
    if found:
        day, month = int(found.group(1)), int(found.group(2))
        same = [c for c in claims if (d := parse_date(c.get("care_date"))) and (d.day, d.month) == (day, month)]
        if len(same) == 1:
            return same[0]
    words = {w for w in re.findall(r"[a-z]{4,}", folded)}
    by_kind = [c for c in claims if words & set(re.findall(r"[a-z]{4,}", _fold(str(c.get("kind") or ""))))]
    return by_kind[0] if len(by_kind) == 1 else None


def complaints_answer(complaints: Sequence[Record], *, short: bool = False) -> str:
    if not complaints:
        return "Nous n'avons aucune réclamation enregistrée à votre nom."
    ordered = sorted(complaints, key=lambda c: str(c.get("received_date") or ""), reverse=True)[:3]
    parts = []
    for c in ordered:
        state = COMPLAINT_STATUS.get(str(c.get("status")), "en cours")
        line = f"Réclamation {c.get('id')} du {fr_date(c.get('received_date'), short=short)} : {state}"
        if c.get("status") == "open":
            urgent = " (urgente)" if _truthy(c.get("urgent")) else ""
            line += f"{urgent}, réponse au plus tard le {fr_date(c.get('due_date'), short=short)}"
        elif c.get("answered_date"):
            line += f" le {fr_date(c.get('answered_date'), short=short)}"
        parts.append(line + ".")
    return "\n".join(parts)


def membership_answer(memberships: Sequence[Record], *, short: bool = False) -> str:
    if not memberships:
        return "Votre adhésion est active ; aucune demande d'adhésion n'est en cours de traitement."
    m = max(memberships, key=lambda r: str(r.get("received_date") or ""))
    received = fr_date(m.get("received_date"), short=short)
    if m.get("documents_sent_date"):
        return (
            f"Votre demande d'adhésion du {received} est validée : vos documents ont été envoyés le "
            f"{fr_date(m.get('documents_sent_date'), short=short)}."
        )
    if m.get("acknowledged_date"):
        return (
            f"Votre demande d'adhésion du {received} est enregistrée (accusé de réception du "
            f"{fr_date(m.get('acknowledged_date'), short=short)}) ; vos documents sont en préparation."
        )
    due = parse_date(m.get("received_date"))
    text = f"Votre demande d'adhésion du {received} est bien reçue"
    if due is not None:
        text += f" ; vous aurez nos documents au plus tard le {fr_date(due + dt.timedelta(days=10), short=short)}"
    return text + "."


def card_answer(cards: Sequence[Record], *, short: bool = False) -> str:
    if not cards:
        return "Aucune carte de tiers payant n'est en cours d'envoi à votre nom."
    card = max(cards, key=lambda r: str(r.get("dispatch_date") or ""))
    status, sent = str(card.get("status") or ""), card.get("dispatch_date")
    on = f" le {fr_date(sent, short=short)}" if sent else ""
    if status == "sent":
        return f"Votre carte de tiers payant a été envoyée par courrier{on}."
    if status == "delivered":
        return (
            f"Votre carte de tiers payant a été distribuée (envoi{on})."
            if sent
            else ("Votre carte de tiers payant a été distribuée.")
        )
    if status == "returned":
        text = "Votre carte de tiers payant nous est revenue : l'adresse est peut-être à mettre à jour."
        return text if short else text + " Écrivez « conseiller » pour la vérifier avec nous."
    text = "Votre carte de tiers payant est en cours de fabrication."
    return text if short else text + " Elle vous sera envoyée par courrier dès qu'elle sera prête."


def quotes_answer(quotes: Sequence[Record], *, short: bool = False) -> str:
    if not quotes:
        return "Nous n'avons reçu aucun devis à votre nom."
    parts = []
    for q in sorted(quotes, key=lambda r: str(r.get("received_date") or ""), reverse=True)[:3]:
        state = QUOTE_STATUS.get(str(q.get("status")), "en cours d'étude")
        line = f"Devis {q.get('kind') or ''} du {fr_date(q.get('received_date'), short=short)} : {state}".replace(
            "  ", " "
        )
        if q.get("status") in ("accepted", "in_review") and q.get("out_of_pocket_eur") not in (None, ""):
            line += f", reste à charge estimé {euros(q.get('out_of_pocket_eur'))}"
        parts.append(line + ".")
    return "\n".join(parts)


def contribution_answer(member: Record, *, short: bool = False) -> str:
    text = f"Votre cotisation mensuelle est de {euros(member.get('contribution_eur'))}"
    if member.get("contribution_call_date"):
        text += f", prochain appel le {fr_date(member.get('contribution_call_date'), short=short)}"
    text += "."
    if not short:
        text += f" Formule : {member.get('cover_level') or 'non renseignée'}."
    return text


def complaint_filed(reference: str, due: dt.date, urgent: bool, *, short: bool = False) -> str:
    kind = "urgente " if urgent else ""
    text = f"Votre réclamation {kind}est enregistrée sous la référence {reference}."
    text += f" Nous vous répondrons au plus tard le {fr_date(due, short=short)}."
    if not short:
        text += " Un conseiller prend la suite de cette conversation."
    return text
