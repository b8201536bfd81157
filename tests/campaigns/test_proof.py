"""The proof of notice as French staff open it: semicolons, a byte-order mark, French headers and
labels, dd/mm/yyyy dates (CSV); real dates in an .xlsx workbook that openpyxl reads back."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import AsyncIterator
from typing import Any

from openpyxl import load_workbook

from campaigns.proof import HEADERS, csv_chunks, xlsx_file

ROWS = [
    {"member": "M0000001", "channel": "sms", "tried": "email", "status": "delivered",
     "queued_at": "2027-01-05T09:00:02+01:00", "sent_at": "2027-01-05T09:00:03+01:00",
     "delivered_at": "2027-01-05T08:00:09+00:00", "deadline": "2027-02-01", "on_time": "oui"},
    {"member": "M0000002", "channel": "courrier", "tried": "email,sms", "status": "postal", "queued_at": "",
     "sent_at": "", "delivered_at": "", "deadline": "2027-02-01", "on_time": ""},
    {"member": "M0000003", "channel": "", "tried": "", "status": "planned", "queued_at": "", "sent_at": "",
     "delivered_at": "", "deadline": "", "on_time": "", "planned_at": "2027-01-06T09:00:00+01:00"},
]  # fmt: skip


async def rows() -> AsyncIterator[dict[str, Any]]:
    for row in ROWS:
        yield row


async def test_csv_opens_in_columns_in_french_excel() -> None:
    raw = b"".join([chunk async for chunk in csv_chunks(rows())])
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel reads the accents right
    text = raw.decode("utf-8-sig")
    lines = list(csv.reader(io.StringIO(text), delimiter=";"))
    assert lines[0] == HEADERS and lines[0][0] == "Numéro d'adhérent" and "Dans les délais" in lines[0]
    first = dict(zip(lines[0], lines[1], strict=True))
    assert first["Canal"] == "SMS" and first["Canaux essayés avant"] == "e-mail" and first["Statut"] == "distribuée"
    assert first["Envoi"] == "05/01/2027 09:00" and first["Distribution"] == "05/01/2027 09:00"  # Paris time
    assert first["Date limite d'information"] == "01/02/2027" and first["Dans les délais"] == "oui"
    postal = dict(zip(lines[0], lines[2], strict=True))
    assert (postal["Canal"], postal["Statut"], postal["Canaux essayés avant"]) == (
        "courrier", "à envoyer par courrier", "e-mail, SMS")  # fmt: skip
    planned = dict(zip(lines[0], lines[3], strict=True))
    assert (planned["Statut"], planned["Envoi prévu"]) == ("prévue", "06/01/2027 09:00")
    assert "," not in text.splitlines()[0]  # no comma separator a French Excel would not split on


async def test_xlsx_has_french_headers_and_real_dates(tmp_path: Any) -> None:
    book = await xlsx_file(rows())
    path = tmp_path / "preuve.xlsx"
    with book:
        path.write_bytes(book.read())
    sheet = load_workbook(path).active
    assert sheet is not None and sheet.title == "Preuve d'envoi"
    values = list(sheet.iter_rows(values_only=True))
    assert list(values[0]) == HEADERS and len(values) == 4
    first = dict(zip(HEADERS, values[1], strict=True))
    assert first["Envoi"] == dt.datetime(2027, 1, 5, 9, 0, 3) and first["Canal"] == "SMS"
    assert first["Date limite d'information"] == dt.datetime(2027, 2, 1)  # a date cell (read back as datetime)
    assert sheet.cell(row=2, column=HEADERS.index("Envoi") + 1).number_format == "dd/mm/yyyy hh:mm"
