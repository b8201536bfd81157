"""The opening-hours setting (public holidays closed, slots, the wording members read) and the short
callback references (unique, claimed in a real Redis, the long ids still found)."""

from __future__ import annotations

import datetime as dt

import pytest
from redis.asyncio import Redis

from agents.waiting import expected_wait_text
from channels.callback import ValidationError, validate
from gateway import callback_refs, keys
from gateway.hours import DEFAULT_HOURS, PARIS, OpeningHours, holiday_name
from gateway.settings import Settings, SettingsError

NOW = dt.datetime(2026, 12, 20, 10, 0, tzinfo=PARIS)


def request(day: str, slot: str = "09:00-12:00") -> dict[str, str]:
    return {"phone": "06 12 34 56 78", "date": day, "slot": slot, "reason": "carte"}


def test_christmas_and_other_public_holidays_are_closed_with_a_clear_message() -> None:
    assert holiday_name(dt.date(2026, 12, 25)) == "Noël"
    assert DEFAULT_HOURS.slots_on(dt.date(2026, 12, 25)) == ()  # a Friday
    assert [s.key for s in DEFAULT_HOURS.slots_on(dt.date(2026, 12, 24))] == ["09:00-12:00", "12:00-14:00",
                                                                              "14:00-18:00"]  # fmt: skip
    with pytest.raises(ValidationError) as refused:
        validate(request("2026-12-25"), NOW)
    assert refused.value.errors == {
        "date": "Le 25/12/2026 est un jour férié (Noël) : nous ne rappelons pas ce jour-là. Choisissez un autre jour."
    }
    assert not DEFAULT_HOURS.is_open(dt.datetime(2027, 5, 6, 10, 0, tzinfo=PARIS))  # Ascension Thursday 2027
    assert DEFAULT_HOURS.is_open(dt.datetime(2027, 5, 5, 10, 0, tzinfo=PARIS))


def test_closed_days_and_slots_say_what_is_open() -> None:
    with pytest.raises(ValidationError) as sunday:
        validate(request("2026-12-27"), NOW)
    assert sunday.value.errors["date"].startswith("Nous ne rappelons pas le dimanche.")
    with pytest.raises(ValidationError) as saturday:
        validate(request("2026-12-26", "14:00-18:00"), NOW)
    assert saturday.value.errors == {"slot": "Le samedi, nous rappelons seulement de 9 h à 12 h."}


def test_the_setting_drives_the_form_the_wording_and_fails_loudly(settings_env: dict[str, str]) -> None:
    assert DEFAULT_HOURS.describe() == (
        "du lundi au vendredi de 9 h à 18 h et le samedi de 9 h à 12 h, sauf les jours fériés"
    )
    hours = Settings.from_env({**settings_env, "OPENING_HOURS": "lun-jeu 08:30-12:00,14:00-17:30; ven 08:30-12:00"})
    assert hours.opening_hours.describe() == (
        "du lundi au jeudi de 8 h 30 à 12 h et de 14 h à 17 h 30 et le vendredi de 8 h 30 à 12 h, sauf les jours fériés"
    )
    # With these hours Saturday is closed, Friday afternoon is not offered.
    with pytest.raises(ValidationError) as saturday:
        validate(request("2026-12-26", "08:30-12:00"), NOW, hours.opening_hours)
    assert saturday.value.errors["date"].startswith("Nous ne rappelons pas le samedi")
    with pytest.raises(ValidationError) as friday:
        validate(request("2026-12-18", "14:00-17:30"), dt.datetime(2026, 12, 14, 9, 0, tzinfo=PARIS),
                 hours.opening_hours)  # fmt: skip
    assert friday.value.errors == {"slot": "Le vendredi, nous rappelons seulement de 8 h 30 à 12 h."}
    for bad in ("lundi 09:00-12:00", "mon 12:00-09:00", "mon 09:00-12:00,11:00-13:00", "mon 9h-12h", ";"):
        with pytest.raises(SettingsError, match="OPENING_HOURS"):
            Settings.from_env({**settings_env, "OPENING_HOURS": bad})
    assert OpeningHours.parse("sun 10:00-11:00").slots_on(dt.date(2026, 12, 27))[0].label == "10 h – 11 h"


async def test_a_handed_off_member_is_told_the_same_hours(redis: Redis) -> None:
    text = await expected_wait_text(redis, "c1")  # nobody online
    assert "du lundi au vendredi de 9 h à 18 h et le samedi de 9 h à 12 h, sauf les jours fériés" in text
    assert "8 h 30" not in text


async def test_references_are_short_readable_unique_and_resolved(redis: Redis) -> None:
    refs = {await callback_refs.claim(redis, f"cb{n:022x}") for n in range(300)}
    assert len(refs) == 300
    for ref in refs:
        assert len(ref) == 8 and ref.startswith("RAP-") and not set(ref[4:]) & set("0O1IL2Z5S8BU")
    ref = sorted(refs)[0]
    owner = await redis.get(keys.callback_ref(ref))
    assert await callback_refs.resolve(redis, ref) == owner
    assert await callback_refs.resolve(redis, f" {ref[4:].lower()} ") == owner  # as read over the phone
    assert await callback_refs.resolve(redis, "cb" + "a" * 22) == "cb" + "a" * 22  # long ids keep working
    assert await callback_refs.resolve(redis, "RAP-0000") is None
    ttl = await redis.ttl(keys.callback_ref(ref))
    assert 0 < ttl <= callback_refs.TTL_S


async def test_a_collision_draws_again(redis: Redis) -> None:
    # A 24th of the references taken (all starting with the first letter): claims never return one of them.
    alphabet = callback_refs.ALPHABET
    taken = [f"RAP-{a}{b}{c}{d}" for a in alphabet[:1] for b in alphabet for c in alphabet for d in alphabet]
    async with redis.pipeline(transaction=False) as pipe:
        for ref in taken:
            pipe.set(keys.callback_ref(ref), "someone")
        await pipe.execute()
    got = [await callback_refs.claim(redis, "cb-new") for _ in range(20)]
    assert all(not g.startswith(f"RAP-{alphabet[0]}") for g in got)  # never one already held
    assert len(set(got)) == 20
