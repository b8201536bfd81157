"""The proof of notice as French staff open it: a CSV that French Excel reads in columns (semicolons,
a UTF-8 byte-order mark, French headers, dates as dd/mm/yyyy) and an ``.xlsx`` workbook (openpyxl,
dates as real dates), from the rows of ``Campaigns.recipients``."""

from __future__ import annotations

import csv
import datetime as dt
import io
import tempfile
from collections.abc import AsyncIterator, Iterable
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell

from campaigns.model import CHANNEL_LABELS
from campaigns.rules import PARIS

# (key in a recipients row, French header)
COLUMNS = (
    ("member", "Numéro d'adhérent"),
    ("channel", "Canal"),
    ("tried", "Canaux essayés avant"),
    ("status", "Statut"),
    ("planned_at", "Envoi prévu"),
    ("queued_at", "Mise en file"),
    ("sent_at", "Envoi"),
    ("delivered_at", "Distribution"),
    ("deadline", "Date limite d'information"),
    ("on_time", "Dans les délais"),
)
HEADERS = [header for _, header in COLUMNS]
STATUS_LABELS = {
    "planned": "prévue", "queued": "en file", "sending": "en envoi", "sent": "envoyée", "delivered": "distribuée",
    "read": "lue", "failed": "échec", "canceled": "annulée", "undelivered": "non distribuée", "postal": "à envoyer par courrier",
    "unknown": "inconnu",
}  # fmt: skip
TIMES = ("planned_at", "queued_at", "sent_at", "delivered_at")
BOM = "\ufeff"


def _moment(value: str) -> dt.datetime | dt.date | None:
    """An ISO time as a Paris wall-clock time (naive, as a spreadsheet shows it), or a date."""
    if not value:
        return None
    try:
        if len(value) == 10:
            return dt.date.fromisoformat(value)
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(PARIS)
    return moment.replace(tzinfo=None)


def values(row: dict[str, Any]) -> list[Any]:
    """One member's line, in French: labels for channels and statuses, dates as dates."""
    out: list[Any] = []
    for name, _ in COLUMNS:
        value = str(row.get(name) or "")
        if name == "channel":
            out.append(CHANNEL_LABELS.get(value, value) if value else "")
        elif name == "tried":
            out.append(", ".join(CHANNEL_LABELS.get(c, c) for c in value.split(",") if c))
        elif name == "status":
            out.append(STATUS_LABELS.get(value, value))
        elif name in TIMES or name == "deadline":
            out.append(_moment(value))
        else:
            out.append(value)
    return out


def _text(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime("%d/%m/%Y %H:%M")
    if isinstance(value, dt.date):
        return value.strftime("%d/%m/%Y")
    return "" if value is None else str(value)


def csv_text(rows: Iterable[dict[str, Any]], *, header: bool = True) -> str:
    """Lines of the French CSV (no byte-order mark: ``BOM`` goes once at the start of a file)."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=";", lineterminator="\r\n")
    if header:
        writer.writerow(HEADERS)
    for row in rows:
        writer.writerow([_text(v) for v in values(row)])
    return buf.getvalue()


async def csv_chunks(rows: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    """The whole file, BOM and header first, 500 members a chunk."""
    pending: list[dict[str, Any]] = []
    yield (BOM + csv_text([])).encode("utf-8")
    async for row in rows:
        pending.append(row)
        if len(pending) >= 500:
            yield csv_text(pending, header=False).encode("utf-8")
            pending.clear()
    if pending:
        yield csv_text(pending, header=False).encode("utf-8")


async def xlsx_file(rows: AsyncIterator[dict[str, Any]]) -> tempfile.SpooledTemporaryFile[bytes]:
    """The workbook, written row by row (openpyxl's write-only mode keeps memory flat) to a temporary
    file the caller streams and closes."""
    book = Workbook(write_only=True)
    sheet = book.create_sheet("Preuve d'envoi")
    sheet.append(HEADERS)
    async for row in rows:
        cells = []
        for value in values(row):
            cell = WriteOnlyCell(sheet, value=value)
            if isinstance(value, dt.datetime):
                cell.number_format = "dd/mm/yyyy hh:mm"
            elif isinstance(value, dt.date):
                cell.number_format = "dd/mm/yyyy"
            cells.append(cell)
        sheet.append(cells)
    out: tempfile.SpooledTemporaryFile[bytes] = tempfile.SpooledTemporaryFile(max_size=8 * 2**20)
    book.save(out)
    out.seek(0)
    return out
