"""What the bot says about a verified member's records, in plain French.

Pure functions over the records as stored in Redis (JSON with ISO dates, see
``members/records.py``): no Rasa and no Redis here, so the wording is tested directly.
``short`` answers (SMS) drop what the member can do without, to stay within a segment or two.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from members.cover import label as cover_label

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
    """The date the commitments give: 48 h tele-transmitted, 5 days on paper, from the day the claim
    was received (records from before that field have only the care date, which stands in for it)."""
    received = parse_date(claim.get("received_date")) or parse_date(claim.get("care_date"))
    if received is None:
        return None
    return received + dt.timedelta(days=TELE_DAYS if _truthy(claim.get("teletransmitted")) else PAPER_DAYS)


APOLOGY = "Nous vous prions de nous excuser pour ce retard."
OFFER = "Un conseiller peut s'en occuper dès maintenant : écrivez « conseiller », ou demandez à être rappelé."
OFFER_SHORT = "Tapez CONSEILLER pour qu'on s'en occupe."


def late_tail(*, apologise: bool, short: bool) -> str:
    """What follows a missed commitment: one apology (the first time in a conversation) and an offer."""
    if short:
        return (" Toutes nos excuses. " if apologise else " ") + OFFER_SHORT
    return (f" {APOLOGY} " if apologise else " ") + OFFER


def claim_late(claim: Record, today: dt.date) -> bool:
    expected = expected_payment(claim)
    return (
        str(claim.get("status") or "") in ("received", "in_progress", "") and expected is not None and expected < today
    )


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "1", "oui", "yes")


def claim_label(claim: Record, *, short: bool = False) -> str:
    return f"{claim.get('kind') or 'soin'} du {fr_date(claim.get('care_date'), short=short)} ({euros(claim.get('amount_eur'))})"


def recent_claims(claims: Iterable[Record], limit: int = 5) -> list[Record]:
    """Most recent care first."""
    return sorted(claims, key=lambda c: str(c.get("care_date") or ""), reverse=True)[:limit]


def claim_answer(claim: Record, today: dt.date, *, short: bool = False, apologise: bool = True) -> str:
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
    tele = _truthy(claim.get("teletransmitted"))
    how = "48 h pour une demande télétransmise" if tele else "5 jours pour une feuille de soins papier"
    received = claim.get("received_date")
    since = f", à compter de sa réception le {fr_date(received, short=short)}" if received else ""
    text = f"Votre remboursement {label} est {state}."
    if expected is None:
        return text
    if expected >= today:
        text += f" Paiement prévu au plus tard le {fr_date(expected, short=short)}"
        return text + ("." if short else f" (notre engagement : {how}{since}).")
    text += f" Il devait être payé au plus tard le {fr_date(expected, short=short)}"
    text += " : nous sommes en retard." if short else f" (notre engagement : {how}{since}) : nous sommes en retard."
    return text + late_tail(apologise=apologise, short=short)


PAGE = 5


def claims_choice(
    claims: Sequence[Record], *, short: bool = False, first: int = 1, more: int = 0, head: str = ""
) -> str:
    """The numbered list to choose from (numbers go on across pages: 6 to 10 on the second)."""
    lines = [f"{i}. {claim_label(c, short=True)}" for i, c in enumerate(claims, first)]
    if not head:
        head = (
            "Quel remboursement ? Répondez par son numéro :"
            if short
            else "Vous avez plusieurs remboursements. Lequel vous intéresse ? Répondez par son numéro :"
        )
    text = head + "\n" + "\n".join(lines)
    if more:
        text += f"\n« autres » : {more} plus ancien{'s' if more > 1 else ''}."
    return text


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in text if not unicodedata.combining(c))


_DATE = re.compile(r"(?<![\d/])(\d{1,2})[/.-](\d{1,2})(?:[/.-](\d{2,4}))?(?![\d/])")
_MONTH_KEYS = {
    "janvier": 1, "janv": 1, "fevrier": 2, "fevr": 2, "fev": 2, "mars": 3, "avril": 4, "avr": 4, "mai": 5,
    "juin": 6, "juillet": 7, "juil": 7, "aout": 8, "septembre": 9, "sept": 9, "octobre": 10, "oct": 10,
    "novembre": 11, "nov": 11, "decembre": 12, "dec": 12,
}  # fmt: skip
_MONTH_RE = "|".join(sorted(_MONTH_KEYS, key=len, reverse=True))
_DAY_MONTH = re.compile(rf"\b(1er|\d{{1,2}})\s+({_MONTH_RE})\b\.?(?:\s+(\d{{4}}))?")
_MONTH_ONLY = re.compile(rf"(?:\bd'|\bde\s|\ben\s|\bmois\s+d'|\bmois\s+de\s|\bdu\s)\s*({_MONTH_RE})\b")
_AMOUNT = re.compile(r"(\d+(?:[.,]\d{1,2})?)\s*(?:€|euros?\b|eur\b)")
# Words members use for a kind of care, beside the kind's own words.
KIND_WORDS = {
    "lunettes": ("lunette", "optique", "opticien", "verres", "monture"),
    "kinesitherapie": ("kine", "kines", "kinesi", "reeducation"),
    "dentaire": ("dentiste", "dent", "dents", "couronne", "implant", "implants", "prothese"),
    "laboratoire": ("analyse", "analyses", "labo", "prise de sang", "biologie"),
    "generaliste": ("medecin", "generaliste", "toubib", "consult"),
    "specialiste": ("specialiste", "ophtalmo", "gyneco", "dermato", "cardio"),
    "pharmacie": ("medicaments", "medicament", "pharma"),
    "hospitalisation": ("hopital", "hospi", "clinique", "hospitalisation"),
    "audio": ("auditif", "auditive", "audioprothese", "appareil auditif"),
    "optique": ("lunettes", "lunette", "opticien", "verres"),
}


@dataclass(frozen=True, slots=True)
class Criteria:
    """What a question names of a record: its date (day and month, or a month), kind, amount, reference."""

    day: tuple[int, int] | None = None  # (day, month)
    month: int | None = None
    words: frozenset[str] = frozenset()
    amount: Decimal | None = None
    text: str = ""

    @property
    def named_date(self) -> bool:
        return self.day is not None or self.month is not None

    def date_words(self, *, short: bool = False) -> str:
        """« du 12/11 », « du 24 août », « d'août »."""
        if self.day is not None:
            d, m = self.day
            return f"du {d:02d}/{m:02d}" if short else f"du {'1er' if d == 1 else d} {MONTHS[m - 1]}"
        if self.month is not None:
            name = MONTHS[self.month - 1]
            return f"d'{name}" if name[0] in "aeiouéè" else f"de {name}"
        return ""


def criteria(text: str) -> Criteria:
    """The record a question names, read from its words (dates without their year; a year-long date
    such as a birth date is not a record's date)."""
    folded = _fold(text or "")
    day: tuple[int, int] | None = None
    month: int | None = None
    if m := _DAY_MONTH.search(folded):
        day = (1 if m.group(1) == "1er" else int(m.group(1)), _MONTH_KEYS[m.group(2)])
    elif m := _DATE.search(folded):
        if 1 <= int(m.group(1)) <= 31 and 1 <= int(m.group(2)) <= 12:
            day = (int(m.group(1)), int(m.group(2)))
    elif m := _MONTH_ONLY.search(folded):
        month = _MONTH_KEYS[m.group(1)]
    amount = None
    if m := _AMOUNT.search(folded):
        with contextlib.suppress(InvalidOperation):
            amount = Decimal(m.group(1).replace(",", "."))
    words = frozenset(re.findall(r"[a-z]{3,}", folded))
    return Criteria(day, month, words, amount, folded)


def _kind_words(kind: str) -> set[str]:
    own = set(re.findall(r"[a-z]{4,}", _fold(kind)))
    extra: set[str] = set()
    for key, synonyms in KIND_WORDS.items():
        if key in own or any(w.startswith(key[:6]) for w in own):
            extra |= {w for s in synonyms for w in s.split()}
    return own | extra


def _record_dates(record: Record, fields: Sequence[str]) -> list[dt.date]:
    return [d for f in fields if (d := parse_date(record.get(f))) is not None]


@dataclass(frozen=True, slots=True)
class Found:
    """Records a question names: ``matches`` (all when it names nothing); when it names a date none
    has, ``missed`` is set and ``matches`` are the nearest ones."""

    matches: list[Record]
    named: bool
    missed: bool = False
    what: str = ""


def find(
    records: Sequence[Record], text: str, *, dates: Sequence[str], kind: str, amounts: Sequence[str],
    today: dt.date, newest_first: bool = True,
) -> Found:  # fmt: skip
    """Every record the question names, across all of them (not only the latest), newest first."""
    order = sorted(records, key=lambda r: str(r.get(dates[0]) or ""), reverse=newest_first)
    c = criteria(text)
    by_ref = [r for r in order if str(r.get("id") or "").lower() and _fold(str(r.get("id"))) in c.text]
    if by_ref:
        return Found(by_ref, True)
    kept = order
    named = False
    if c.amount is not None:
        named = True
        kept = [r for r in kept if any(_same_amount(r.get(f), c.amount) for f in amounts)]
    kinds = [r for r in kept if c.words & _kind_words(str(r.get(kind) or ""))]
    if kinds:
        named, kept = True, kinds
    if c.named_date:
        named = True
        dated = [r for r in kept if any(_date_matches(d, c) for d in _record_dates(r, dates[:1]))]
        if not dated:  # the named date matches none: the nearest ones, by how far their date is
            target = _named_day(c, today)
            nearest = sorted(kept or order, key=lambda r: min(
                (abs((d - target).days) for d in _record_dates(r, dates[:1])), default=10**6))  # fmt: skip
            return Found(nearest[:3], True, missed=True, what=c.date_words())
        kept = dated
    if named and not kept:
        return Found(order[:3], True, missed=True)
    return Found(kept, named)


def _same_amount(value: Any, amount: Decimal) -> bool:
    try:
        return abs(Decimal(str(value)) - amount) < Decimal("0.01")
    except (InvalidOperation, ValueError):
        return False


def _date_matches(day: dt.date, c: Criteria) -> bool:
    if c.day is not None:
        return (day.day, day.month) == c.day
    return c.month is not None and day.month == c.month


def _named_day(c: Criteria, today: dt.date) -> dt.date:
    """The named day in the most recent year it has passed (a month: its 15th)."""
    day, month = c.day if c.day is not None else (15, c.month or today.month)
    for year in (today.year, today.year - 1):
        with contextlib.suppress(ValueError):
            candidate = dt.date(year, month, min(day, 28) if month == 2 else day)
            if candidate <= today + dt.timedelta(days=31):
                return candidate
    return today


def pick_claim(text: str, claims: Sequence[Record], *, today: dt.date | None = None) -> Record | None:
    """The claim a reply names: its number in the list, its care date, kind, amount or reference."""
    folded = _fold(text).strip()
    number = re.fullmatch(r"(?:n[o°]?\s*|numero\s*|le\s*|la\s*)?(\d{1,2})\s*[.)]?", folded)
    if number:
        n = int(number.group(1))
        return claims[n - 1] if 1 <= n <= len(claims) else None
    found = find(claims, text, dates=("care_date", "received_date"), kind="kind",
                 amounts=("amount_eur", "reimbursed_eur"), today=today or dt.date.today())  # fmt: skip
    return found.matches[0] if found.named and not found.missed and len(found.matches) == 1 else None


def complaint_late(c: Record, today: dt.date) -> bool:
    due = parse_date(c.get("due_date"))
    return c.get("status") == "open" and due is not None and due < today


def complaints_answer(
    complaints: Sequence[Record], *, short: bool = False, today: dt.date | None = None, apologise: bool = True,
    head: str = "",
) -> str:  # fmt: skip
    """The complaints given (newest first, three at most), each with its status and due date; a
    missed due date is said, with one apology and an adviser offered."""
    today = today or dt.date.today()
    if not complaints:
        return "Nous n'avons aucune réclamation enregistrée à votre nom."
    parts = [head] if head else []
    late = False
    for c in list(complaints)[:3]:
        state = COMPLAINT_STATUS.get(str(c.get("status")), "en cours")
        line = f"Réclamation {c.get('id')} du {fr_date(c.get('received_date'), short=short)} : {state}"
        if c.get("status") == "open":
            urgent = " (urgente)" if _truthy(c.get("urgent")) else ""
            if complaint_late(c, today):
                late = True
                line += (
                    f"{urgent} ; nous devions vous répondre au plus tard le {fr_date(c.get('due_date'), short=short)}"
                )
                line += " : ce délai est dépassé"
            else:
                line += f"{urgent}, réponse au plus tard le {fr_date(c.get('due_date'), short=short)}"
        elif c.get("answered_date"):
            line += f" le {fr_date(c.get('answered_date'), short=short)}"
        parts.append(line + ".")
    text = "\n".join(parts)
    return text + (late_tail(apologise=apologise, short=short) if late else "")


def newest(records: Sequence[Record], field: str) -> list[Record]:
    return sorted(records, key=lambda r: str(r.get(field) or ""), reverse=True)


def membership_due(m: Record) -> dt.date | None:
    received = parse_date(m.get("received_date"))
    return received + dt.timedelta(days=10) if received is not None else None


def membership_late(memberships: Sequence[Record], today: dt.date) -> bool:
    if not memberships:
        return False
    m = max(memberships, key=lambda r: str(r.get("received_date") or ""))
    due = membership_due(m)
    return not m.get("documents_sent_date") and due is not None and due < today


def membership_answer(
    memberships: Sequence[Record], *, short: bool = False, today: dt.date | None = None, apologise: bool = True
) -> str:
    today = today or dt.date.today()
    if not memberships:
        return "Votre adhésion est active ; aucune demande d'adhésion n'est en cours de traitement."
    m = max(memberships, key=lambda r: str(r.get("received_date") or ""))
    received = fr_date(m.get("received_date"), short=short)
    if m.get("documents_sent_date"):
        return (
            f"Votre demande d'adhésion du {received} est validée : vos documents ont été envoyés le "
            f"{fr_date(m.get('documents_sent_date'), short=short)}."
        )
    due = membership_due(m)
    if m.get("acknowledged_date"):
        text = (
            f"Votre demande d'adhésion du {received} est enregistrée (accusé de réception du "
            f"{fr_date(m.get('acknowledged_date'), short=short)}) ; vos documents sont en préparation"
        )
    else:
        text = f"Votre demande d'adhésion du {received} est bien reçue"
    if due is None:
        return text + "."
    if due < today:
        text += (
            f". Vous deviez recevoir vos documents au plus tard le {fr_date(due, short=short)} : nous sommes en retard."
        )
        return text + late_tail(apologise=apologise, short=short)
    return text + f" ; vous aurez nos documents au plus tard le {fr_date(due, short=short)}."


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


def quotes_answer(quotes: Sequence[Record], *, short: bool = False, head: str = "") -> str:
    """The quotes given (newest first, three at most)."""
    if not quotes:
        return "Nous n'avons reçu aucun devis à votre nom."
    parts = [head] if head else []
    for q in list(quotes)[:3]:
        state = QUOTE_STATUS.get(str(q.get("status")), "en cours d'étude")
        line = f"Devis {q.get('kind') or ''} du {fr_date(q.get('received_date'), short=short)} : {state}".replace(
            "  ", " "
        )
        if q.get("status") in ("accepted", "in_review") and q.get("out_of_pocket_eur") not in (None, ""):
            line += f", reste à charge estimé {euros(q.get('out_of_pocket_eur'))}"
        parts.append(line + ".")
    return "\n".join(parts)


AGE_BANDS = ((0, 25), (26, 40), (41, 55), (56, 65), (66, 75), (76, 200))


def age_on(born: dt.date, day: dt.date) -> int:
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def age_band(age: int) -> tuple[int, int]:
    return next(b for b in AGE_BANDS if b[0] <= age <= b[1])


def _amount(value: Any) -> Decimal | None:
    """« 71,20 », « 71,20 € », "71.2" (a per-member file's cell or a record's field) → Decimal."""
    text = str(value or "").replace("€", "").replace(NNBSP, "").replace("\xa0", "").replace(" ", "").replace(",", ".")
    try:
        return Decimal(text) if text else None
    except InvalidOperation:
        return None


def notice_change(member: Record, notice: Mapping[str, Any], today: dt.date, *, short: bool = False) -> str:
    """What the advance notice said, in one sentence: the new amount and the change, when it applies,
    and when and how the notice was sent (« Elle passera à 71,20 € (+7,00 €, soit +10,9 %) le 1er janvier
    2027 : nous vous l'avons annoncé le 20 novembre 2026 par e-mail. »)."""
    effective = parse_date(notice.get("effective"))
    current, new = _amount(member.get("contribution_eur")), _amount(notice.get("new"))
    when = fr_date(effective, short=short) if effective else ""
    future = effective is None or effective > today
    if new is not None and new > 0:
        change = ""
        if current is not None and current > 0 and new != current and future:
            delta = new - current
            percent = (delta * 100 / current).quantize(Decimal("0.1"))
            sign = "+" if delta > 0 else "−"
            change = f" ({sign}{euros(abs(delta))}, soit {sign}{str(abs(percent)).replace('.', ',')} %)"
        if future:
            text = f"Elle passera à {euros(new)}{change}" + (f" le {when}" if when else "")
        else:
            text = f"Elle est passée à {euros(new)} le {when}"
    else:
        text = ("Elle change" if future else "Elle a changé") + (f" le {when}" if when else "")
    if notice.get("sent"):
        text += (
            f" : nous vous l'{'avons' if future else 'avions'} annoncé le {fr_date(notice.get('sent'), short=short)}"
        )
        text += f" {notice['channel']}" if notice.get("channel") else ""
    return text + "."


def contribution_answer(
    member: Record,
    *,
    short: bool = False,
    why: bool = False,
    today: dt.date | None = None,
    notice: Mapping[str, Any] | None = None,
) -> str:
    """The monthly contribution and its next call, and a change announced by an advance notice (``notice``,
    from the campaigns' record of the notice sent to this member: ``notices.contribution_notice``); with
    ``why``, what makes it change: the age band (and whether the member entered a new one this year), the
    cover level, the yearly rate change (with the notice's dates when there is one)."""
    today = today or dt.date.today()
    text = f"Votre cotisation mensuelle est de {euros(member.get('contribution_eur'))}"
    if member.get("contribution_call_date"):
        text += f", prochain appel le {fr_date(member.get('contribution_call_date'), short=short)}"
    text += "."
    effective = parse_date(notice.get("effective")) if notice else None
    if notice and (why or effective is None or effective > today):
        text += " " + notice_change(member, notice, today, short=short)
    cover = cover_label(str(member.get("cover_level") or "")) or "non renseignée"
    if not why:
        return text if short else text + f" Formule : {cover}."
    reasons = []
    born = parse_date(member.get("birth_date"))
    if born is not None:
        age = age_on(born, today)
        low, high = age_band(age)
        band = f"{low} ans et plus" if high >= 200 else f"{low}–{high} ans"
        if age_band(age_on(born, today - dt.timedelta(days=365))) != (low, high):
            reasons.append(f"votre tranche d'âge ({band} ; vous y êtes entré(e) cette année, ce qui augmente le tarif)")
        else:
            reasons.append(f"votre tranche d'âge ({band}, inchangée cette année)")
    reasons.append(f"votre formule « {cover} »")
    on = f"au {fr_date(effective, short=short)}" if effective else "au 1er janvier"
    # The notice's dates are in the sentence above; the yearly change is said with its effective date.
    reasons.append(f"l'évolution annuelle de nos tarifs {on}, votée par notre assemblée générale")
    text += " Ce qui la fait évoluer : " + ", ".join(reasons[:-1]) + " et " + reasons[-1] + "."
    if not short:
        text += " Un conseiller peut vous détailler le calcul : écrivez « conseiller »."
    return text


def complaint_filed(reference: str, due: dt.date, urgent: bool, *, short: bool = False) -> str:
    kind = "urgente " if urgent else ""
    text = f"Votre réclamation {kind}est enregistrée sous la référence {reference}."
    text += f" Nous vous répondrons au plus tard le {fr_date(due, short=short)}."
    if not short:
        text += " Un conseiller prend la suite de cette conversation."
    return text
