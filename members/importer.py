"""``run.py import DIR``: load member records from CSV files, all or nothing.

Files (UTF-8, comma-separated, a header row naming the columns of ``members.records``):
``members.csv`` (required), ``claims.csv``, ``complaints.csv``, ``quotes.csv``, ``cards.csv``,
``memberships.csv``. Every row of every file is validated before anything is written; any
error is reported as ``file:line: column: message`` and nothing is written. Writes are
idempotent (a record is keyed on its id), and the import marks itself running until done,
so an import cut off half-way is reported by the next run and completed by running it again.

The records API (``members/api.py``) validates each record with the same row parsers (``PARSERS_BY_KIND``)
and writes through the same path (``members.changes.RecordWriter``); the import writes unversioned.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from tqdm import tqdm

from gateway.phones import normalise_phone
from members import cover, numbers
from members.changes import Change, RecordWriter, kind_of
from members.records import (
    CARD_STATUSES,
    CLAIM_STATUSES,
    COMPLAINT_STATUSES,
    NOTIFY_KINDS,
    PREFERRED_CHANNELS,
    QUOTE_STATUSES,
    SEGMENTS,
    Card,
    Claim,
    Complaint,
    Member,
    Membership,
    Quote,
    complaint_due,
    required_field_names,
)

STATE_KEY = "mbr:import:state"
FILES: dict[str, type[Any]] = {
    "members.csv": Member,
    "claims.csv": Claim,
    "complaints.csv": Complaint,
    "quotes.csv": Quote,
    "cards.csv": Card,
    "memberships.csv": Membership,
}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,39}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TRUE = {"1", "true", "oui", "vrai", "yes", "o"}
_FALSE = {"0", "false", "non", "faux", "no", "n", ""}


class RowError(ValueError):
    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column


class RowErrors(ValueError):
    def __init__(self, errors: list[RowError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


class Checker:
    """Runs every column check of a row, keeping all the errors instead of stopping at the first."""

    def __init__(self, row: dict[str, str]) -> None:
        self.row = row
        self.errors: list[RowError] = []

    def __call__(self, check: Callable[..., Any], col: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return check(self.row, col, *args, **kwargs)
        except RowError as exc:
            self.errors.append(exc)
            return ""

    def done(self) -> None:
        if self.errors:
            raise RowErrors(self.errors)


@dataclass
class ImportReport:
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    resumed: bool = False


def _date(row: dict[str, str], col: str, *, required: bool = True, past: bool = False) -> str:
    raw = (row.get(col) or "").strip()
    if not raw:
        if required:
            raise RowError(col, "date manquante")
        return ""
    try:
        value = dt.date.fromisoformat(raw)
    except ValueError:
        try:
            value = dt.datetime.strptime(raw, "%d/%m/%Y").date()
        except ValueError:
            raise RowError(col, f"date illisible {raw!r} (AAAA-MM-JJ ou JJ/MM/AAAA)") from None
    if past and value > dt.date.today():
        raise RowError(col, "date dans le futur")
    return value.isoformat()


def _amount(row: dict[str, str], col: str, *, required: bool = True) -> str:
    raw = (row.get(col) or "").strip().replace(",", ".").replace("€", "").replace(" ", "")
    if not raw:
        if required:
            raise RowError(col, "montant manquant")
        return ""
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise RowError(col, f"montant illisible {row.get(col)!r}") from None
    if value < 0:
        raise RowError(col, "montant négatif")
    return f"{value:.2f}"


def _choice(row: dict[str, str], col: str, choices: Iterable[str]) -> str:
    value = (row.get(col) or "").strip().lower()
    allowed = tuple(choices)
    if value not in allowed:
        raise RowError(col, f"valeur {value!r} inconnue (attendu : {', '.join(allowed)})")
    return value


def _bool(row: dict[str, str], col: str) -> bool:
    value = (row.get(col) or "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise RowError(col, f"valeur {value!r} : oui ou non attendu")


def _ident(row: dict[str, str], col: str) -> str:
    value = (row.get(col) or "").strip()
    if not _ID.match(value):
        raise RowError(col, f"identifiant invalide {value!r}")
    return value


def _member_number(row: dict[str, str], col: str) -> str:
    """A member number in the format the bot reads (``MEMBER_NUMBER_FORMAT``, default M + 7 digits):
    a number the bot could not read would leave its member unable to identify themselves."""
    value = (row.get(col) or "").strip()
    fmt = numbers.current()
    if not fmt.valid(value):
        raise RowError(
            col, f"numéro d'adhérent {value!r} hors du format attendu ({fmt.wording}, par exemple {fmt.example})"
        )
    return value


def _text(row: dict[str, str], col: str, *, required: bool = True, max_len: int = 200) -> str:
    value = (row.get(col) or "").strip()
    if required and not value:
        raise RowError(col, "valeur manquante")
    if len(value) > max_len:
        raise RowError(col, f"plus de {max_len} caractères")
    return value


def _phone(row: dict[str, str], col: str) -> str:
    raw = (row.get(col) or "").strip()
    phone = normalise_phone(raw) if raw else ""
    if phone is None:
        raise RowError(col, f"numéro de téléphone invalide {raw!r}")
    return phone


def _email(row: dict[str, str], col: str) -> str:
    email = (row.get(col) or "").strip().lower()
    if email and not _EMAIL.match(email):
        raise RowError(col, f"adresse e-mail invalide {email!r}")
    return email


def member_row(row: dict[str, str]) -> Member:
    c = Checker(row)
    member = Member(
        number=c(_member_number, "number"),
        first_name=c(_text, "first_name", max_len=80),
        last_name=c(_text, "last_name", max_len=80),
        birth_date=c(_date, "birth_date", past=True),
        phone=c(_phone, "phone"),
        email=c(_email, "email"),
        cover_level=c(_cover_level, "cover_level"),
        region=c(_text, "region", max_len=60),
        segment=c(_choice, "segment", SEGMENTS),
        contribution_eur=c(_amount, "contribution_eur"),
        contribution_call_date=c(_date, "contribution_call_date"),
        preferred_channel=c(_preferred, "preferred_channel"),
        notify_optout=c(_optouts, "notify_optout"),
    )
    c.done()
    return member


def _cover_level(row: dict[str, str], col: str) -> str:
    """One of the mutuelle's levels (``COVER_LEVELS``), however cased or accented; stored as the setting spells it."""
    value = (row.get(col) or "").strip()
    level = cover.canonical(value)
    if level is None:
        raise RowError(
            col, f"formule {value!r} inconnue (attendu : {', '.join(cover.levels())} ; réglage COVER_LEVELS)"
        )
    return level


def _preferred(row: dict[str, str], col: str) -> str:
    """Optional column: the channel the member prefers for messages the mutuelle sends first."""
    value = (row.get(col) or "").strip().lower()
    if value and value not in PREFERRED_CHANNELS:
        raise RowError(col, f"canal {value!r} inconnu (attendu : {', '.join(PREFERRED_CHANNELS)}, ou vide)")
    return value


def _optouts(row: dict[str, str], col: str) -> str:
    """Optional column: the kinds of messages sent first the member declined ("all", or kinds by commas)."""
    kinds = [k.strip().lower() for k in (row.get(col) or "").replace(";", ",").split(",") if k.strip()]
    unknown = [k for k in kinds if k not in ("all", *NOTIFY_KINDS)]
    if unknown:
        raise RowError(col, f"type {unknown[0]!r} inconnu (attendu : all, {', '.join(NOTIFY_KINDS)})")
    return ",".join(dict.fromkeys(kinds))


def claim_row(row: dict[str, str]) -> Claim:
    c = Checker(row)
    status = c(_choice, "status", CLAIM_STATUSES)
    claim = Claim(
        id=c(_ident, "id"),
        member=c(_member_number, "member"),
        care_date=c(_date, "care_date", past=True),
        kind=c(_text, "kind", max_len=80),
        amount_eur=c(_amount, "amount_eur"),
        reimbursed_eur=c(_amount, "reimbursed_eur", required=status == "paid"),
        status=status,
        payment_date=c(_date, "payment_date", required=status == "paid"),
        teletransmitted=bool(c(_bool, "teletransmitted")),
        received_date=c(_date, "received_date", required=False, past=True),
    )
    c.done()
    return claim


def complaint_row(row: dict[str, str]) -> Complaint:
    c = Checker(row)
    received = c(_date, "received_date", past=True)
    urgent = bool(c(_bool, "urgent"))
    due = c(_date, "due_date", required=False)
    if not due and received:
        due = complaint_due(dt.date.fromisoformat(received), urgent).isoformat()
    complaint = Complaint(
        id=c(_ident, "id"),
        member=c(_member_number, "member"),
        received_date=received,
        urgent=urgent,
        due_date=due,
        status=c(_choice, "status", COMPLAINT_STATUSES),
        subject=c(_text, "subject", max_len=200),
        answered_date=c(_date, "answered_date", required=False),
        closed_date=c(_date, "closed_date", required=False),
    )
    c.done()
    return complaint


def quote_row(row: dict[str, str]) -> Quote:
    c = Checker(row)
    quote = Quote(
        id=c(_ident, "id"),
        member=c(_member_number, "member"),
        kind=c(_choice, "kind", ("optique", "dentaire", "audio")),
        received_date=c(_date, "received_date", past=True),
        status=c(_choice, "status", QUOTE_STATUSES),
        amount_eur=c(_amount, "amount_eur"),
        out_of_pocket_eur=c(_amount, "out_of_pocket_eur", required=False),
    )
    c.done()
    return quote


def card_row(row: dict[str, str]) -> Card:
    c = Checker(row)
    card = Card(
        id=c(_ident, "id"),
        member=c(_member_number, "member"),
        status=c(_choice, "status", CARD_STATUSES),
        dispatch_date=c(_date, "dispatch_date", required=False),
    )
    c.done()
    return card


def membership_row(row: dict[str, str]) -> Membership:
    c = Checker(row)
    membership = Membership(
        id=c(_ident, "id"),
        member=c(_member_number, "member"),
        received_date=c(_date, "received_date", past=True),
        acknowledged_date=c(_date, "acknowledged_date", required=False),
        documents_sent_date=c(_date, "documents_sent_date", required=False),
    )
    c.done()
    return membership


PARSERS: dict[str, Callable[[dict[str, str]], Any]] = {
    "members.csv": member_row,
    "claims.csv": claim_row,
    "complaints.csv": complaint_row,
    "quotes.csv": quote_row,
    "cards.csv": card_row,
    "memberships.csv": membership_row,
}
# The same parsers by the records API's kind names (members.changes.KINDS).
PARSERS_BY_KIND: dict[str, Callable[[dict[str, str]], Any]] = {
    name.removesuffix(".csv"): parser for name, parser in PARSERS.items()
}


def read_all(directory: Path, known_members: set[str]) -> tuple[dict[str, list[Any]], list[str]]:
    """Parse and validate every file; returns the records and the errors (file:line: column: message)."""
    parsed: dict[str, list[Any]] = {}
    errors: list[str] = []
    if not (directory / "members.csv").exists():
        return {}, [f"{directory / 'members.csv'}: fichier manquant"]
    members_in_file: set[str] = set()
    for name, parser in PARSERS.items():
        path = directory / name
        if not path.exists():
            continue
        rows: list[Any] = []
        expected = set(required_field_names(FILES[name]))
        try:
            with path.open(newline="", encoding="utf-8-sig") as fh:
                reader = csv.DictReader(fh)
                missing = expected - set(reader.fieldnames or [])
                if missing:
                    errors.append(f"{name}:1: colonnes manquantes : {', '.join(sorted(missing))}")
                    continue
                seen: set[str] = set()
                for row in reader:
                    line = reader.line_num
                    try:
                        record = parser(row)
                    except RowErrors as exc:
                        errors.extend(f"{name}:{line}: {e.column}: {e}" for e in exc.errors)
                        continue
                    ident = record.number if name == "members.csv" else record.id
                    if ident in seen:
                        errors.append(f"{name}:{line}: identifiant en double {ident!r}")
                        continue
                    seen.add(ident)
                    if name == "members.csv":
                        members_in_file.add(ident)
                    elif record.member not in members_in_file and record.member not in known_members:
                        errors.append(f"{name}:{line}: member: adhérent inconnu {record.member!r}")
                        continue
                    rows.append(record)
        except UnicodeDecodeError:
            errors.append(f"{name}: le fichier n'est pas en UTF-8")
        except csv.Error as exc:
            errors.append(f"{name}: CSV illisible ({exc})")
        parsed[name] = rows
    return parsed, errors


def to_change(record: Any) -> Change:
    """An import row as an unversioned upsert (the import overwrites, as it always did)."""
    if isinstance(record, Member):
        return Change("members", record.number, record.number, record)
    return Change(kind_of(record), record.member, record.id, record)


async def import_directory(redis: Redis, directory: Path, *, progress: bool = True, batch: int = 500) -> ImportReport:
    report = ImportReport()
    writer = RecordWriter(redis)
    known = set(await redis.smembers("mbr:all"))
    parsed, report.errors = read_all(directory, known)
    if report.errors:
        return report
    previous = await redis.get(STATE_KEY)
    report.resumed = bool(previous and previous.startswith("running"))
    total = sum(len(v) for v in parsed.values())
    await redis.set(STATE_KEY, f"running {dt.datetime.now(dt.UTC).isoformat()}")
    bar = tqdm(total=total, unit="fiche", desc="Import", disable=not progress)
    try:
        for name, records in parsed.items():
            for start in range(0, len(records), batch):
                chunk = records[start : start + batch]
                await writer.apply([to_change(record) for record in chunk])
                bar.update(len(chunk))
            report.counts[name] = len(records)
    finally:
        bar.close()
    await redis.set(STATE_KEY, f"done {dt.datetime.now(dt.UTC).isoformat()} {total}")
    return report
