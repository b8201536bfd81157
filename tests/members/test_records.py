"""Member records: synthetic data, CSV import (all or nothing), linking contacts to members."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot.actions import answers
from campaigns.model import Audience
from gateway.contacts import Contacts
from members import cover, numbers
from members.demo_data import generate
from members.importer import STATE_KEY, import_directory
from members.records import ALL_MEMBERS, MemberStore


async def test_demo_data_imports_and_links_contacts(redis: Redis, tmp_path: Path) -> None:
    counts = generate(200, tmp_path, progress=False)
    assert counts["members.csv"] == 200 and counts["claims.csv"] > 200 and counts["cards.csv"] == 200
    report = await import_directory(redis, tmp_path, progress=False)
    assert report.errors == []
    assert report.counts == counts
    store = MemberStore(redis)
    assert await store.count() == 200
    member = await store.get("M0100000")
    assert member is not None and member.first_name and member.birth_date < dt.date.today().isoformat()
    claims = await store.records("M0100000", "claims")
    assert all(c["member"] == "M0100000" for c in claims)
    # A message from the member's registered phone or e-mail is linked to the member.
    with_phone = next(r for r in csv.DictReader((tmp_path / "members.csv").open()) if r["phone"] and r["email"])
    contacts = Contacts(redis)
    by_phone = await contacts.resolve(f"tel:{with_phone['phone']}", "sms")
    by_mail = await contacts.resolve(f"mailto:{with_phone['email']}", "email")
    assert (await contacts.get(by_phone))["member_id"] == with_phone["number"]
    assert (await contacts.get(by_mail))["member_id"] == with_phone["number"]
    # Same seed, same data; a second import changes nothing.
    again = await import_directory(redis, tmp_path, progress=False)
    assert again.errors == [] and await store.count() == 200
    assert (await redis.get(STATE_KEY) or "").startswith("done")


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


MEMBER_HEADER = [
    "number", "first_name", "last_name", "birth_date", "phone", "email", "cover_level", "region",
    "segment", "contribution_eur", "contribution_call_date",
]  # fmt: skip


async def test_any_error_is_reported_by_file_and_line_and_nothing_is_written(redis: Redis, tmp_path: Path) -> None:
    good = ["M0000001", "Jeanne", "Martin", "1958-03-12", "01 99 00 12 34", "jeanne@example.fr", "confort",
            "Bretagne", "senior", "64,90", "2027-01-05"]  # fmt: skip
    write_csv(
        tmp_path / "members.csv",
        MEMBER_HEADER,
        [
            good,
            [*good[:1], "Paul", "Durand", "31/02/1970", *good[4:]],  # impossible date (line 3)
            ["M0000003", "Luc", "Petit", "1980-01-01", "+1 202 555 0123", "luc@", "platine", "X", "famille", "-3", "x"],
        ],
    )
    write_csv(
        tmp_path / "claims.csv",
        [
            "id",
            "member",
            "care_date",
            "kind",
            "amount_eur",
            "reimbursed_eur",
            "status",
            "payment_date",
            "teletransmitted",
        ],
        [["S0001", "M9999999", "2026-01-01", "pharmacie", "12.50", "", "received", "", "oui"]],
    )
    report = await import_directory(redis, tmp_path, progress=False)
    text = "\n".join(report.errors)
    assert "members.csv:3: birth_date:" in text
    assert "members.csv:3: identifiant en double" not in text  # the bad row is reported for its date only
    for column in ("phone", "email", "cover_level", "contribution_eur", "contribution_call_date"):
        assert f"members.csv:4: {column}:" in text
    assert "claims.csv:2: member: adhérent inconnu 'M9999999'" in text
    assert await redis.scard(ALL_MEMBERS) == 0
    assert await redis.get(STATE_KEY) is None


async def test_missing_file_or_columns_are_clear_errors(redis: Redis, tmp_path: Path) -> None:
    report = await import_directory(redis, tmp_path, progress=False)
    assert report.errors and "members.csv" in report.errors[0] and "manquant" in report.errors[0]
    write_csv(tmp_path / "members.csv", ["number", "first_name"], [["M1", "A"]])
    report = await import_directory(redis, tmp_path, progress=False)
    assert report.errors[0].startswith("members.csv:1: colonnes manquantes")


async def test_a_member_number_the_bot_could_not_read_is_refused_naming_the_line(
    redis: Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = ["M0000001", "Jeanne", "Martin", "1958-03-12", "01 99 00 12 34", "jeanne@example.fr", "confort",
            "Bretagne", "senior", "64,90", "2027-01-05"]  # fmt: skip
    write_csv(tmp_path / "members.csv", MEMBER_HEADER, [good, ["MT-12345678", *good[1:4], "", "", *good[6:]]])
    report = await import_directory(redis, tmp_path, progress=False)
    assert any(
        e.startswith("members.csv:3: number: numéro d'adhérent 'MT-12345678' hors du format attendu")
        and "M suivi de 7 chiffres, par exemple M9876543" in e
        for e in report.errors
    ), report.errors
    assert await redis.scard(ALL_MEMBERS) == 0
    # The mutuelle's own format, as a setting: the same file then imports, and the bot reads the number
    # however the member types it.
    monkeypatch.setenv(numbers.ENV, "MT-########")
    write_csv(tmp_path / "members.csv", MEMBER_HEADER, [["MT-12345678", *good[1:]]])
    report = await import_directory(redis, tmp_path, progress=False)
    assert report.errors == [] and await MemberStore(redis).get("MT-12345678") is not None
    fmt = numbers.current()
    assert [fmt.parse_number(t) for t in ("MT-12345678", "12345678", "mt 1234 5678", "M12345678")] == [
        "MT-12345678"
    ] * 4
    assert fmt.parse_number("M0000001") is None


def test_demo_data_follows_the_number_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(numbers.ENV, "MT-########")
    generate(3, tmp_path, progress=False)
    with (tmp_path / "members.csv").open(encoding="utf-8") as f:
        assert [row["number"] for row in csv.DictReader(f)] == ["MT-00100000", "MT-00100001", "MT-00100002"]
    with (tmp_path / "claims.csv").open(encoding="utf-8") as f:
        claims = list(csv.DictReader(f))
    assert claims and all(c["received_date"] >= c["care_date"] for c in claims)


async def test_cover_levels_are_the_mutuelles_own_list(
    redis: Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cover.ENV, "Essentiel, Confort, Confort+ , Intégral Senior")
    assert cover.levels() == ("Essentiel", "Confort", "Confort+", "Intégral Senior")
    good = ["M0000001", "Jeanne", "Martin", "1958-03-12", "01 99 00 12 34", "jeanne@example.fr", "CONFORT+",
            "Bretagne", "senior", "64,90", "2027-01-05"]  # fmt: skip
    other = ["M0000002", *good[1:4], "", "", "integral  senior", *good[7:]]
    unknown = ["M0000003", *good[1:4], "", "", "renfort", *good[7:]]  # a default name, not this mutuelle's
    write_csv(tmp_path / "members.csv", MEMBER_HEADER, [good, other, unknown])
    report = await import_directory(redis, tmp_path, progress=False)
    assert report.errors == [
        "members.csv:4: cover_level: formule 'renfort' inconnue (attendu : Essentiel, Confort, Confort+, "
        "Intégral Senior ; réglage COVER_LEVELS)"
    ], report.errors
    assert await redis.scard(ALL_MEMBERS) == 0
    write_csv(tmp_path / "members.csv", MEMBER_HEADER, [good, other])
    assert (await import_directory(redis, tmp_path, progress=False)).errors == []
    store = MemberStore(redis)
    stored = [m.cover_level for m in (await store.get("M0000001"), await store.get("M0000002")) if m]
    assert stored == ["Confort+", "Intégral Senior"]  # the setting's spelling, however it was typed
    # The bot names a level as the setting spells it, even one stored before the setting changed.
    assert answers.contribution_answer({"contribution_eur": "64.9", "cover_level": "intégral senior"}).endswith(
        "Formule : Intégral Senior."
    )
    # A campaign's audience filter finds them too, however they were stored.
    audience = Audience(cover_levels=["Intégral Senior"])
    assert audience.matches({"cover_level": "integral senior"}, dt.date.today())
    assert not audience.matches({"cover_level": "Confort+"}, dt.date.today())
    # The demo data draws from the list.
    generate(40, tmp_path / "demo", progress=False)
    with (tmp_path / "demo" / "members.csv").open(encoding="utf-8") as f:
        assert {row["cover_level"] for row in csv.DictReader(f)} <= set(cover.levels())
    monkeypatch.setenv(cover.ENV, "Base, base")
    with pytest.raises(ValueError, match="COVER_LEVELS"):
        cover.levels()
