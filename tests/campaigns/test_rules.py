"""The one-calendar-month rule and the send window, on the dates that go wrong."""

from __future__ import annotations

import datetime as dt

import pytest

from campaigns.model import parse_member_list
from campaigns.rules import PARIS, SendWindow, end_of_day, estimate, latest_notice_date


@pytest.mark.parametrize(
    ("effective", "latest"),
    [
        ("2027-03-31", "2027-02-28"),  # clamped to the end of February
        ("2028-03-31", "2028-02-29"),  # leap year
        ("2028-03-29", "2028-02-29"),
        ("2027-03-28", "2027-02-28"),
        ("2027-01-31", "2026-12-31"),  # across the year
        ("2027-01-01", "2026-12-01"),
        ("2027-05-31", "2027-04-30"),
        ("2027-10-31", "2027-09-30"),
        ("2027-07-15", "2027-06-15"),
    ],
)
def test_latest_notice_date_is_one_calendar_month_before(effective: str, latest: str) -> None:
    assert latest_notice_date(dt.date.fromisoformat(effective)) == dt.date.fromisoformat(latest)


def test_end_of_day_across_daylight_saving_changes() -> None:
    spring = end_of_day(dt.date(2027, 3, 28))  # 23-hour day
    autumn = end_of_day(dt.date(2027, 10, 31))  # 25-hour day
    assert (spring.hour, spring.minute, spring.utcoffset()) == (23, 59, dt.timedelta(hours=2))
    assert (autumn.hour, autumn.minute, autumn.utcoffset()) == (23, 59, dt.timedelta(hours=1))


def test_window_skips_sundays_and_public_holidays() -> None:
    window = SendWindow()
    saturday_night = dt.datetime(2027, 3, 27, 20, 0, tzinfo=PARIS)
    # Sunday 28 March (clocks change), Easter Monday 29 March: next opening Tuesday 09:00 summer time.
    assert window.next_open(saturday_night) == dt.datetime(2027, 3, 30, 9, 0, tzinfo=PARIS)
    assert not window.open_on(dt.date(2027, 7, 14)) and not window.open_on(dt.date(2027, 5, 8))
    assert window.contains(dt.datetime(2027, 3, 30, 8, 30, tzinfo=dt.UTC))  # 10:30 in Paris
    with pytest.raises(ValueError, match="dimanche"):
        SendWindow(weekdays=(7,))


def test_sending_time_counts_only_open_hours() -> None:
    window = SendWindow(start=dt.time(9), end=dt.time(19))
    friday_6pm = dt.datetime(2027, 3, 26, 18, 0, tzinfo=PARIS)
    assert window.finish_time(friday_6pm, 2 * 3600) == dt.datetime(2027, 3, 27, 10, 0, tzinfo=PARIS)
    est = estimate({"email": 72_000, "sms": 10_000}, {"email": 20.0, "sms": 10.0}, friday_6pm, window)
    assert est.seconds == 3600  # channels in parallel: 72,000 e-mails at 20/s
    assert est.finish == dt.datetime(2027, 3, 26, 19, 0, tzinfo=PARIS)


def test_a_member_list_from_a_spreadsheet_or_a_plain_file() -> None:
    sheet = "\ufeffNom;N° adhérent;Ville\nDurand;M0000001;Brest\n\nMartin;M0000002;Rennes\nX;pas un numéro;Y\nDurand;M0000001;Brest\n"
    assert parse_member_list(sheet) == (["M0000001", "M0000002"], [5])
    assert parse_member_list("M0000003\r\nM0000004\r\n  M0000005  \r\n") == (["M0000003", "M0000004", "M0000005"], [])
    assert parse_member_list("numero,email\nM0000006,a@b.fr\n") == (["M0000006"], [])
    assert parse_member_list("Liste de juin\nM0000007\n") == (["M0000007"], [])  # an unknown header line
    assert parse_member_list("") == ([], [])
