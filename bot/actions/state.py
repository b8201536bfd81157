"""The bot's security state, kept in Redis beside the gateway's conversation (never only in Rasa).

Verification (DESIGN.md, "Identity and health data"): the sender's address must belong to a
member and a second factor be answered (birth date, or a one-time code the gateway sent to the
registered phone or e-mail). Three failures lock verification for the conversation; a
verification holds for ``VERIFY_TTL_S``, for the sender that answered, and does not link that
sender's address to the member (a browser or a Telegram chat stays a stranger's until the member
consents). Wrong codes are also counted per member number for the day, every conversation
together (``code_failed``), and a failed verification goes to the agents at most once an hour per
member number (``handoff_allowed``). Every disclosure of a member's data is audited.
A handoff marks the conversation for agents; the gateway then stops asking the bot.

Works with redis-py 4 (the bot's virtualenv) and 5+ (the gateway's), ``decode_responses=True``.
"""

from __future__ import annotations

import datetime as dt
import hmac
import os
import re
import time
import unicodedata
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from gateway import events, keys
from members import numbers
from members.records import Complaint, MemberStore, complaint_due


def _verify_ttl_s() -> int:
    """How long a verification holds: ``BOT_VERIFY_MINUTES`` (default 15, from 1 to 240)."""
    raw = os.environ.get("BOT_VERIFY_MINUTES", "").strip()
    minutes = int(raw) if raw.isdigit() else 15
    return max(1, min(240, minutes)) * 60


VERIFY_TTL_S = _verify_ttl_s()
MAX_FAILURES = 3
OTP_TTL_S = 10 * 60
FAILURES_PER_DAY = 10  # wrong codes per member number a day, unless the gateway says otherwise
HANDOFF_EVERY_S = 3600  # a failed verification against one member number reaches agents once an hour
PARIS = ZoneInfo("Europe/Paris")
# KEYS[1] = the day's counters; ARGV[1] = conversations waiting now. Keeps the day's largest queue.
QUEUE_PEAK = """
local n = tonumber(ARGV[1])
if n > tonumber(redis.call('HGET', KEYS[1], 'queue_peak') or '0') then redis.call('HSET', KEYS[1], 'queue_peak', n) end
return n
"""

# KEYS[1] = a conversation's code; ARGV[1] = tries allowed. Counts a wrong try; the last one drops the code.
WRONG_CODE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local n = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if n >= tonumber(ARGV[1]) then redis.call('DEL', KEYS[1]) end
return n
"""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Verification:
    member: str | None  # the verified member, while the verification holds, for this sender
    failures: int
    locked: bool
    stage: str  # "", "birth_date", "member_number" or "otp": what this sender was last asked
    candidate: str  # the member the answers are checked against


async def verification(redis: Any, conv_id: str, contact: str) -> Verification:
    """The conversation's verification as it stands for the sender ``contact`` (the gateway's contact
    of the message being answered). A verification, and a question asked, hold only for the contact
    that answered or was asked: an e-mail joins the conversation of the thread it answers whoever
    sends it, so another address writing into a member's thread (or the member answering the code
    e-mail a stranger triggered, which joins the stranger's conversation) must prove who they are."""
    raw = await redis.hmget(
        keys.conversation(conv_id),
        ["verified_member", "verified_until_ms", "verified_contact", "verify_failures", "verify_locked",
         "verify_stage", "verify_member", "verify_contact"],
    )  # fmt: skip
    member, until, verified_contact, failures, locked, stage, candidate, asked = (v or "" for v in raw)
    valid = bool(member) and until.isdigit() and int(until) > now_ms() and verified_contact == contact
    mine = asked == contact
    return Verification(
        member=member if valid else None,
        failures=int(failures) if failures.isdigit() else 0,
        locked=locked == "1",
        stage=stage if mine else "",
        candidate=candidate if mine else "",
    )


async def begin(redis: Any, conv_id: str, stage: str, candidate: str, contact: str) -> None:
    """``contact`` is asked for ``stage``; its answers are checked against ``candidate``."""
    await redis.hset(
        keys.conversation(conv_id),
        mapping={"verify_stage": stage, "verify_member": candidate, "verify_contact": contact},
    )


async def fail(redis: Any, conv_id: str) -> int:
    """Count a failed answer; the third locks verification for the conversation (and drops its code)."""
    key = keys.conversation(conv_id)
    failures = int(await redis.hincrby(key, "verify_failures", 1))
    if failures >= MAX_FAILURES:
        await redis.hset(key, mapping={"verify_locked": "1", "verify_stage": ""})
        await redis.delete(keys.conversation_otp(conv_id))
    return failures


async def succeed(redis: Any, conv_id: str, member: str, contact: str, *, link: bool = False) -> None:
    """Verified: for the next 15 minutes, for the sender ``contact``. The sender's address is linked to
    the member only when ``link`` says so (the member consented); a verification alone never does."""
    if contact and link:
        await redis.hsetnx(keys.contact(contact), "member_id", member)
        await redis.sadd(keys.member_contacts(member), contact)
    await redis.hset(
        keys.conversation(conv_id),
        mapping={
            "verified_member": member,
            "verified_until_ms": str(now_ms() + VERIFY_TTL_S * 1000),
            "verified_at_ms": str(now_ms()),
            "verified_contact": contact,
            "verify_failures": "0",
            "verify_stage": "",
            "verify_member": "",
            "verify_contact": "",
            "member_id": member,
        },
    )


async def check_code(redis: Any, conv_id: str, member: str, digests: list[str]) -> str:
    """The code typed for ``member`` in this conversation, given as the keyed digests the gateway made
    of the codes the message may hold (``members/otp.py``; the key stays in the gateway):

    ``"ok"`` once for the right code (it is consumed: one of two racing right answers wins),
    ``"expired"`` when the conversation's code has expired (no try counted), ``"none"`` when no code
    was drawn here for this member (or the verification is locked), ``"wrong"`` otherwise (the code
    takes ``MAX_FAILURES`` wrong tries, then it is dropped). Digests compared in constant time."""
    key = keys.conversation_otp(conv_id)
    stored = await redis.hgetall(key)
    if not stored or not member or stored.get("member") != member or not stored.get("digest"):
        return "none"
    if await redis.hget(keys.conversation(conv_id), "verify_locked") == "1":
        return "none"
    expires = str(stored.get("expires_ms") or "")
    if expires.isdigit() and int(expires) <= now_ms():
        return "expired"
    right = str(stored["digest"]).encode()
    matched = False
    for digest in digests[:5]:
        matched |= hmac.compare_digest(right, str(digest).encode())
    if matched:
        return "ok" if await redis.delete(key) else "none"
    await redis.eval(WRONG_CODE, 1, key, MAX_FAILURES)
    return "wrong"


async def otp_matches(redis: Any, conv_id: str, member: str, digests: list[str]) -> bool:
    """True once for the right code of ``member`` in this conversation (see ``check_code``)."""
    return await check_code(redis, conv_id, member, digests) == "ok"


def _day() -> str:
    return dt.datetime.now(PARIS).date().isoformat()


async def code_failures(redis: Any, member: str) -> int:
    """Wrong codes tried today for this member number, every conversation and channel together."""
    return int(await redis.hget(keys.member_otp_day(member, _day()), "failed") or 0)


async def code_failed(redis: Any, member: str) -> int:
    """Count a wrong code for this member number today; returns the day's count."""
    key = keys.member_otp_day(member, _day())
    n = int(await redis.hincrby(key, "failed", 1))
    await redis.expire(key, 2 * 24 * 3600)
    return n


async def handoff_allowed(redis: Any, member: str, every_s: int = HANDOFF_EVERY_S) -> bool:
    """True at most once an hour (``every_s``) per member number: strangers failing to verify as one
    member do not fill the agents' queue (the first failure goes to them, the others are told to call)."""
    if not member or every_s <= 0:
        return True
    return bool(await redis.set(keys.member_otp_handoff(member), "1", nx=True, ex=every_s))


_BIRTH = re.compile(r"(?<![\d/])(\d{1,2})\s*([/.\- ])\s*(\d{1,2})\s*\2\s*(\d{4}|\d{2})(?![\d/])")
_BIRTH_ISO = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")
_BIRTH_PACKED = re.compile(r"(?<!\d)(\d{2})(\d{2})(\d{4}|\d{2})(?!\d)")
_MONTH_WORDS = {
    "janvier": 1, "janv": 1, "jan": 1, "fevrier": 2, "fevr": 2, "fev": 2, "mars": 3, "mar": 3, "avril": 4,
    "avr": 4, "mai": 5, "juin": 6, "juillet": 7, "juil": 7, "aout": 8, "septembre": 9, "sept": 9, "sep": 9,
    "octobre": 10, "oct": 10, "novembre": 11, "nov": 11, "decembre": 12, "dec": 12,
}  # fmt: skip
_BIRTH_WORDS = re.compile(r"\b(1er|\d{1,2})\s+([a-z]+)\.?\s+(\d{4}|\d{2})\b")
# Words that say a date is the member's own birth date, even inside a longer message.
BIRTH_CUES = re.compile(r"\b(nee?s?|naissance|ddn|anniversaire)\b")


def _fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", (text or "").lower()) if not unicodedata.combining(c))


def _year(two_or_four: str, today: dt.date) -> int:
    year = int(two_or_four)
    if len(two_or_four) == 2:  # two digits: the most recent past year with those digits
        year += 2000 if 2000 + year <= today.year else 1900
    return year


def parse_birth_date(text: str, today: dt.date | None = None) -> dt.date | None:
    """A birth date as members type it: 12/03/1958, 12-3-58, 3/3/85, 12 03 1958, 12031958, 1958-03-12,
    12 mars 1958, 3 mars 85, 1er avril 62. A date without a year (« du 12/11 ») is none."""
    return _birth_parts(text, today)[0]


def _birth_parts(text: str, today: dt.date | None) -> tuple[dt.date | None, bool]:
    """(the date, whether something shaped like a full date was typed at all)."""
    folded = _fold(text)
    today = today or dt.date.today()
    if m := _BIRTH_ISO.search(folded):
        year, month, day = int(m.group(1)), int(m.group(2)), int(m.group(3))
    elif m := _BIRTH_WORDS.search(folded):
        if m.group(2) not in _MONTH_WORDS:
            return None, False
        day = 1 if m.group(1) == "1er" else int(m.group(1))
        month, year = _MONTH_WORDS[m.group(2)], _year(m.group(3), today)
    elif m := _BIRTH.search(folded):
        day, month, year = int(m.group(1)), int(m.group(3)), _year(m.group(4), today)
    elif m := _BIRTH_PACKED.search(folded):
        day, month, year = int(m.group(1)), int(m.group(2)), _year(m.group(3), today)
    else:
        return None, False
    try:
        born = dt.date(year, month, day)
    except ValueError:
        return None, True
    if not dt.date(1900, 1, 1) <= born <= today:
        return None, True
    return born, True


def birth_date_typed(text: str, today: dt.date | None = None) -> tuple[dt.date | None, bool]:
    """For the birth-date question: (the date, well formed). A shape of date that is no real date
    (« 31/02/1975 ») is not well formed: the member gets an example, and no try is counted."""
    born, shaped = _birth_parts(text, today)
    return born, born is not None and shaped


def parse_member_number(text: str) -> str | None:
    """The member number in ``text`` in the format setting's canonical form (« 0100234 »,
    « m 010 0234 », « MT-0100234 » → « M0100234 » with the default format)."""
    return numbers.current().parse_number(text)


OTP_CODE = re.compile(r"(?<!\d)(\d{3})\s?(\d{3})(?!\d)")


def parse_code(text: str) -> str | None:
    m = OTP_CODE.search(text)
    return m.group(1) + m.group(2) if m else None


async def handoff(
    redis: Any, conv_id: str, *, reason: str, intent: str, member: str | None, summary: str, urgent: bool = False
) -> None:
    """Mark the conversation for agents, with what they need to pick it up; idempotent."""
    key = keys.conversation(conv_id)
    at = now_ms()
    await redis.hset(
        key,
        mapping={
            "status": "handoff",
            "handoff_reason": reason,
            "handoff_intent": intent,
            "handoff_member": member or "",
            "handoff_summary": summary[:1000],
            "handoff_urgent": "1" if urgent else "0",
            "handoff_ms": str(at),
        },
    )
    if await redis.zadd(keys.HANDOFF_QUEUE, {conv_id: at}, nx=True):
        day = keys.day_stats(dt.datetime.fromtimestamp(at / 1000, PARIS).date().isoformat())
        await redis.hincrby(day, "handoffs", 1)
        waiting = int(await redis.zcard(keys.HANDOFF_QUEUE))
        await redis.eval(QUEUE_PEAK, 1, day, waiting)
    queued = await redis.zscore(keys.HANDOFF_QUEUE, conv_id)
    if queued is not None:  # the back office is told once per handoff (keyed on when it was queued)
        await events.emit(redis, events.HANDED_OFF, f"{conv_id} {int(queued)}", {
            "conversation": conv_id, "member": member or "", "reason": reason, "intent": intent, "urgent": urgent,
            "at_ms": int(queued)})  # fmt: skip
    await redis.publish(keys.CONSOLE_NOTIFY, conv_id)  # agents' consoles refresh their queue


async def file_complaint(
    redis: Any, conv_id: str, turn_id: str, member: str, subject: str, urgent: bool, today: dt.date
) -> Complaint:
    """Record the complaint once per turn (a retried action gets the same reference)."""
    marker = keys.complaint_filed(conv_id, turn_id)
    existing = await redis.get(marker)
    store = MemberStore(redis)
    if existing:
        for record in await store.records(member, Complaint.RECORD):
            if record.get("id") == existing:
                complaint = Complaint(**record)
                await complaint_filed_event(redis, conv_id, complaint)  # again: a retry after a crash tells it once
                return complaint
    seq = int(await redis.incr(keys.COMPLAINT_SEQ))
    complaint = Complaint(
        id=f"REC-{today.year}-B{seq:06d}",
        member=member,
        received_date=today.isoformat(),
        urgent=urgent,
        due_date=complaint_due(today, urgent).isoformat(),
        status="open",
        subject=subject[:500],
        answered_date="",
    )
    if not await redis.set(marker, complaint.id, nx=True, ex=30 * 24 * 3600):
        return await file_complaint(redis, conv_id, turn_id, member, subject, urgent, today)
    async with redis.pipeline(transaction=False) as pipe:
        store.write_record(pipe, complaint)
        await pipe.execute()
    await complaint_filed_event(redis, conv_id, complaint)
    return complaint


async def complaint_filed_event(redis: Any, conv_id: str, complaint: Complaint) -> None:
    """The back office is told of the complaint: its reference and due date (not the member's words)."""
    await events.emit(redis, events.COMPLAINT_FILED, complaint.id, {
        "reference": complaint.id, "member": complaint.member, "received_date": complaint.received_date,
        "due_date": complaint.due_date, "urgent": complaint.urgent, "conversation": conv_id})  # fmt: skip
