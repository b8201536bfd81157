"""The bot's security state in a real Redis: verification, lock, one-time codes, audit, handoff."""

from __future__ import annotations

import datetime as dt

import pytest
from redis.asyncio import Redis

from bot.actions import state
from gateway import keys
from gateway.members import Complaint, MemberStore, audit
from gateway.otp import otp_digest


@pytest.mark.parametrize(
    "typed",
    ["12/03/1975", "12-3-75", "12.03.1975", "12 03 1975", "1975-03-12", "né le 12 mars 1975", "12 MARS 1975",
     "je suis nee le 12/03/75"],
)  # fmt: skip
def test_birth_dates_as_members_type_them(typed: str) -> None:
    assert state.parse_birth_date(typed, dt.date(2026, 12, 2)) == dt.date(1975, 3, 12)


@pytest.mark.parametrize("typed", ["31/02/1975", "hier", "12 brumaire 1975", ""])
def test_not_a_birth_date(typed: str) -> None:
    assert state.parse_birth_date(typed) is None


def test_member_numbers_and_codes() -> None:
    assert state.parse_member_number("mon numéro : m 0100234") == "M0100234"
    assert state.parse_member_number("0100234") is None
    assert state.parse_code("le code est 482 913") == "482913"
    assert state.parse_code("12345") is None


async def test_three_failures_lock_and_success_expires(redis: Redis) -> None:
    await state.begin(redis, "c1", "birth_date", "M0000042")
    assert (await state.fail(redis, "c1"), await state.fail(redis, "c1")) == (1, 2)
    assert not (await state.verification(redis, "c1")).locked
    assert await state.fail(redis, "c1") == 3
    locked = await state.verification(redis, "c1")
    assert locked.locked and locked.member is None
    await state.succeed(redis, "c2", "M0000042")
    assert (await state.verification(redis, "c2")).member == "M0000042"
    await redis.hset(keys.conversation("c2"), "verified_until_ms", str(state.now_ms() - 1))
    assert (await state.verification(redis, "c2")).member is None  # expired: asked again


async def test_a_code_matches_once_for_its_member_and_conversation(redis: Redis) -> None:
    key = keys.conversation_otp("c1")
    await redis.hset(key, mapping={"member": "M0000042", "digest": otp_digest("c1", "123456")})
    assert not await state.otp_matches(redis, "c2", "M0000042", "123456")  # another conversation
    assert not await state.otp_matches(redis, "c1", "M0000043", "123456")  # another member
    assert not await state.otp_matches(redis, "c1", "M0000042", "654321")
    assert await state.otp_matches(redis, "c1", "M0000042", "123456")
    assert not await state.otp_matches(redis, "c1", "M0000042", "123456")  # consumed


async def test_filing_is_once_per_turn_with_its_due_date(redis: Redis) -> None:
    day = dt.date(2026, 12, 2)
    first = await state.file_complaint(redis, "c1", "msg-1", "M0000042", "prélevé deux fois", True, day)
    again = await state.file_complaint(redis, "c1", "msg-1", "M0000042", "prélevé deux fois", True, day)
    other = await state.file_complaint(redis, "c1", "msg-2", "M0000042", "autre chose", False, day)
    assert first == again and other.id != first.id
    assert (first.due_date, other.due_date) == ("2026-12-05", "2026-12-12")  # 3 days urgent, 10 days otherwise
    stored = await MemberStore(redis).records("M0000042", Complaint.RECORD)
    assert sorted(r["id"] for r in stored) == sorted([first.id, other.id])


async def test_audit_and_handoff_records(redis: Redis) -> None:
    await audit(redis, "M0000042", "c1", "sms", "claim", ["S1"])
    [(_, entry)] = await redis.xrange(keys.member_audit("M0000042"))
    assert entry["what"] == "claim" and entry["channel"] == "sms" and entry["records"] == '["S1"]'
    assert await redis.xlen(keys.AUDIT_ALL) == 1
    await state.handoff(redis, "c1", reason="ask_human", intent="card_status", member=None, summary="Demandes : carte.")
    conv = await redis.hgetall(keys.conversation("c1"))
    assert (conv["status"], conv["handoff_reason"], conv["handoff_intent"]) == ("handoff", "ask_human", "card_status")
    assert await redis.zrange(keys.HANDOFF_QUEUE, 0, -1) == ["c1"]
