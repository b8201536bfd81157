"""The bot's security state in a real Redis: verification, lock, one-time codes, audit, handoff."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import hmac
import inspect
import random
import re

import pytest
from redis.asyncio import Redis

from bot.actions import state
from gateway import keys
from members import otp
from members.audit import audit
from members.codes import OTP_TTL_S, OneTimeCodes
from members.otp import new_code, otp_digest, otp_key, typed_digests
from members.records import Complaint, Member, MemberStore

KEY = otp_key("test-secret")


def typed(conv: str, text: str) -> list[str]:
    """What the gateway hands the bot for a message: the keyed digests of the codes it may hold."""
    return typed_digests(KEY, conv, text)


@pytest.mark.parametrize(
    "typed",
    ["12/03/1975", "12-3-75", "12.03.1975", "12 03 1975", "1975-03-12", "né le 12 mars 1975", "12 MARS 1975",
     "je suis nee le 12/03/75", "12031975", "12/3/75", "12 mars 75", "le 12 mars 1975"],
)  # fmt: skip
def test_birth_dates_as_members_type_them(typed: str) -> None:
    assert state.parse_birth_date(typed, dt.date(2026, 12, 2)) == dt.date(1975, 3, 12)


@pytest.mark.parametrize(
    "typed",
    ["31/02/1975", "hier", "12 brumaire 1975", "", "où en est mon remboursement du 12/11", "12/11", "03/03/2099"],
)
def test_not_a_birth_date(typed: str) -> None:
    assert state.parse_birth_date(typed) is None


def test_a_badly_formed_birth_date_is_not_well_formed() -> None:
    assert state.birth_date_typed("31/02/1975") == (None, False)
    assert state.birth_date_typed("3 mars 85", dt.date(2026, 12, 2)) == (dt.date(1985, 3, 3), True)


def test_member_numbers_and_codes() -> None:
    assert state.parse_member_number("mon numéro : m 0100234") == "M0100234"
    for typed in ("0100234", "M0100234", "m 010 0234", "MT-0100234", "mt 0100234", "adhérent n° M 0100234"):
        assert state.parse_member_number(typed) == "M0100234", typed
    for typed in ("M01234", "03031985", "06 12 34 56 78", "REC-2026-0100234"):
        assert state.parse_member_number(typed) is None, typed
    assert state.parse_code("le code est 482 913") == "482913"
    assert state.parse_code("12345") is None


async def test_three_failures_lock_and_success_expires(redis: Redis) -> None:
    await state.begin(redis, "c1", "birth_date", "M0000042", "k1")
    assert (await state.fail(redis, "c1"), await state.fail(redis, "c1")) == (1, 2)
    assert not (await state.verification(redis, "c1", "k1")).locked
    assert await state.fail(redis, "c1") == 3
    locked = await state.verification(redis, "c1", "k1")
    assert locked.locked and locked.member is None
    await state.succeed(redis, "c2", "M0000042", "k2")
    assert (await state.verification(redis, "c2", "k2")).member == "M0000042"
    await redis.hset(keys.conversation("c2"), "verified_until_ms", str(state.now_ms() - 1))
    assert (await state.verification(redis, "c2", "k2")).member is None  # expired: asked again


async def test_verification_and_questions_hold_for_the_sender_who_answered(redis: Redis) -> None:
    """An e-mail joins the conversation of the thread it answers, whoever sends it: another address
    in a verified member's thread is not verified, and is not the one the pending question was for."""
    await state.begin(redis, "c1", "otp", "M0000042", "stranger")
    assert (await state.verification(redis, "c1", "stranger")).stage == "otp"
    member = await state.verification(redis, "c1", "member")  # the member answering the code e-mail
    assert (member.stage, member.candidate) == ("", "")
    await state.succeed(redis, "c1", "M0000042", "member")
    assert (await state.verification(redis, "c1", "member")).member == "M0000042"
    assert (await state.verification(redis, "c1", "stranger")).member is None
    # A verification does not link the address to the member (a browser or Telegram chat stays a
    # stranger's); only the member's consent does, for the one who answered.
    assert await redis.hget(keys.contact("member"), "member_id") is None
    await state.succeed(redis, "c1", "M0000042", "member", link=True)
    assert await redis.hget(keys.contact("member"), "member_id") == "M0000042"
    assert await redis.hget(keys.contact("stranger"), "member_id") is None


async def test_a_code_matches_once_for_its_member_and_conversation(redis: Redis) -> None:
    key = keys.conversation_otp("c1")
    await redis.hset(key, mapping={"member": "M0000042", "digest": otp_digest(KEY, "c1", "123456")})
    assert not await state.otp_matches(redis, "c2", "M0000042", typed("c2", "123456"))  # another conversation
    assert not await state.otp_matches(redis, "c1", "M0000043", typed("c1", "123456"))  # another member
    assert not await state.otp_matches(redis, "c1", "M0000042", typed("c1", "654321"))
    assert await state.otp_matches(redis, "c1", "M0000042", typed("c1", "123456"))
    assert not await state.otp_matches(redis, "c1", "M0000042", typed("c1", "123456"))  # consumed


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


# One-time codes (DESIGN.md, "Identity and health data"): random, single use, short-lived, compared in
# constant time, three tries.


def test_codes_are_drawn_from_the_system_csprng_uniformly() -> None:
    draws = [new_code() for _ in range(20_000)]
    assert all(len(c) == 6 and c.isdigit() for c in draws)
    # 20,000 draws among 10^6 codes: about n^2 / 2N = 200 repeats by chance alone; a generator with a
    # small state or a narrow range repeats far more, a counter far less.
    repeats = len(draws) - len(set(draws))
    assert 120 <= repeats <= 300, repeats
    for position in range(6):  # each digit about 2,000 times per position
        counts = collections.Counter(c[position] for c in draws)
        assert set(counts) == set("0123456789") and max(counts.values()) < 2_300 and min(counts.values()) > 1_700
    assert sum(c.startswith("0") for c in draws) > 1_700  # leading zeros kept: the whole space is used
    random.seed(7)  # not the random module: seeding it does not replay the codes
    first = [new_code() for _ in range(5)]
    random.seed(7)
    assert [new_code() for _ in range(5)] != first
    assert "secrets.randbelow" in inspect.getsource(otp.new_code)


async def test_a_code_sent_by_the_gateway_lives_ten_minutes(redis: Redis) -> None:
    member = Member("M0000042", "Camille", "Durand", "1975-03-12", "+33199001234", "", "confort", "Bretagne",
                    "famille", "64.20", "2026-12-20")  # fmt: skip
    async with redis.pipeline(transaction=False) as pipe:
        MemberStore(redis).write(pipe, member)
        await pipe.execute()
    codes = OneTimeCodes(redis, secret="test-secret", mutuelle="Mutuelle des Tilleuls")
    outcome = await codes.request("c1", "M0000042", source="s1")
    [reply] = outcome.send
    assert reply.urn == "tel:+33199001234"
    # The code message names the mutuelle and says not to answer it.
    assert reply.text.startswith("Mutuelle des Tilleuls : ") and "Ne répondez pas à ce message." in reply.text
    code = re.findall(r"\d{6}", reply.text)[0]
    stored = await redis.hgetall(keys.conversation_otp("c1"))
    assert code not in str(stored) and stored["digest"] == otp_digest(KEY, "c1", code)  # a keyed digest only
    assert stored["digest"] != otp_digest(otp_key("another-secret"), "c1", code)
    assert int(stored["expires_ms"]) - int(stored["sent_ms"]) == OTP_TTL_S * 1000 == 600_000
    await redis.hset(keys.conversation_otp("c1"), "expires_ms", str(state.now_ms() - 1))  # ten minutes later
    assert await state.check_code(redis, "c1", "M0000042", typed("c1", code)) == "expired"  # said so
    again = (await codes.request("c1", "M0000042", source="s2")).send
    assert again and await redis.hget(keys.conversation_otp("c1"), "digest") != otp_digest(KEY, "c1", code)
    # Strangers claiming to be the member from many conversations: a third code at once, then none.
    assert (await codes.request("c2", "M0000042", source="s3")).send
    refused = await codes.request("c3", "M0000042", source="s4")
    assert refused.send == [] and "réessayez dans" in refused.say[0]
    assert not await redis.exists(keys.conversation_otp("c3"))


async def code_for(redis: Redis, conv: str, code: str = "123456") -> None:
    await redis.hset(keys.conversation_otp(conv), mapping={"member": "M0000042", "digest": otp_digest(KEY, conv, code)})


async def test_three_wrong_codes_and_even_the_right_one_is_refused(redis: Redis) -> None:
    await code_for(redis, "c1")
    for wrong in ("000000", "654321", "123457"):
        assert not await state.otp_matches(redis, "c1", "M0000042", typed("c1", wrong))
    assert not await state.otp_matches(redis, "c1", "M0000042", typed("c1", "123456"))
    await code_for(redis, "c2")  # two wrong tries leave the third to the member
    for wrong in ("000000", "654321"):
        assert not await state.otp_matches(redis, "c2", "M0000042", typed("c2", wrong))
    assert await state.otp_matches(redis, "c2", "M0000042", typed("c2", "123456"))
    await code_for(redis, "c3")  # locked by wrong birth dates or numbers: no code gets through either
    for _ in range(state.MAX_FAILURES):
        await state.fail(redis, "c3")
    assert not await state.otp_matches(redis, "c3", "M0000042", typed("c3", "123456"))


async def test_codes_are_compared_in_constant_time_whatever_is_typed(redis: Redis) -> None:
    await code_for(redis, "c1")
    # Wrong lengths and non-ASCII digits (hmac.compare_digest raises TypeError on non-ASCII str:
    # the digests are compared as bytes) are refused like any wrong code, without an error.
    for text in ("12345", "1234567", "", "１２３４５６", "١٢٣٤٥٦", "123456\x00", "é" * 64):
        for given in ([] if text == "123456\x00" else typed("c1", text), [otp_digest(KEY, "c1", text)], [text]):
            assert not await state.otp_matches(redis, "c1", "M0000042", given)  # whatever the metadata holds
            await redis.hdel(keys.conversation_otp("c1"), "attempts")
    assert typed("c1", "le code : 123 456.") == [otp_digest(KEY, "c1", "123456")]  # as members type it
    assert await state.otp_matches(redis, "c1", "M0000042", typed("c1", "mon code est le 12-34-56"))
    await code_for(redis, "c1")
    await redis.hset(keys.conversation_otp("c1"), "digest", "abc")  # a digest of another length
    assert not await state.otp_matches(redis, "c1", "M0000042", typed("c1", "123456"))
    source = inspect.getsource(state.check_code)
    assert "hmac.compare_digest(" in source and " == otp_digest" not in source and "!= otp_digest" not in source
    assert hmac.compare_digest(otp_digest(KEY, "c1", "123456").encode(), otp_digest(KEY, "c1", "123456").encode())


async def test_a_right_code_answered_twice_at_once_verifies_once(redis: Redis) -> None:
    await code_for(redis, "c1")
    both = await asyncio.gather(*(state.otp_matches(redis, "c1", "M0000042", typed("c1", "123456")) for _ in range(2)))
    assert sorted(both) == [False, True]
