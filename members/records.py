"""Member records in Redis: members and what the bot answers about (claims, complaints,
quotes, third-party-payment card, membership acknowledgement).

All of one member's records share the member's hash tag (``mbr:{<number>}…``) so they live
in one cluster slot, are read together, and are erased together. Records are plain JSON
(dates as ISO strings) so the bot's actions, in their own virtualenv, read them as they are.
Registered phone and e-mail are indexed to link contacts to members.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, ClassVar

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from gateway import keys
from members import cover

CLAIM_STATUSES = ("received", "in_progress", "paid", "rejected")
COMPLAINT_STATUSES = ("open", "answered", "closed")
QUOTE_STATUSES = ("received", "in_review", "accepted", "refused")
CARD_STATUSES = ("in_production", "sent", "delivered", "returned")
# The default cover levels; the mutuelle's own list is the COVER_LEVELS setting: ``members.cover.levels()``.
COVER_LEVELS = cover.DEFAULT_LEVELS
SEGMENTS = ("individuel", "famille", "senior", "entreprise", "etudiant")
PREFERRED_CHANNELS = ("sms", "email", "whatsapp")
NOTIFY_KINDS = ("claims", "complaints", "quotes", "cards", "memberships", "contributions")

ALL_MEMBERS = "mbr:all"


def complaint_due(received: dt.date, urgent: bool) -> dt.date:
    """The commitment: an answer within 10 days, 3 days when urgent."""
    return received + dt.timedelta(days=3 if urgent else 10)


@dataclass(frozen=True, slots=True)
class Member:
    number: str
    first_name: str
    last_name: str
    birth_date: str
    phone: str  # E.164 or ""
    email: str  # lower case or ""
    cover_level: str
    region: str
    segment: str
    contribution_eur: str  # monthly, decimal string
    contribution_call_date: str
    # Messages the product sends first when a record changes (members/proactive.py): the channel the member
    # prefers ("" = the first that reaches them), and the kinds they declined ("all", or e.g. "claims,cards").
    preferred_channel: str = ""
    notify_optout: str = ""


@dataclass(frozen=True, slots=True)
class Claim:
    RECORD: ClassVar[str] = "claims"
    id: str
    member: str
    care_date: str
    kind: str
    amount_eur: str
    reimbursed_eur: str
    status: str
    payment_date: str
    teletransmitted: bool
    # When the mutuelle received the claim (the commitments run from it); optional column: records
    # written before it existed have none, and the care date stands in for it.
    received_date: str = ""


@dataclass(frozen=True, slots=True)
class Complaint:
    RECORD: ClassVar[str] = "complaints"
    id: str  # the reference given to the member
    member: str
    received_date: str
    urgent: bool
    due_date: str
    status: str
    subject: str
    answered_date: str
    closed_date: str = ""  # optional column


@dataclass(frozen=True, slots=True)
class Quote:
    RECORD: ClassVar[str] = "quotes"
    id: str
    member: str
    kind: str  # optique / dentaire / audio
    received_date: str
    status: str
    amount_eur: str
    out_of_pocket_eur: str


@dataclass(frozen=True, slots=True)
class Card:
    RECORD: ClassVar[str] = "card"
    id: str  # card number
    member: str
    status: str
    dispatch_date: str


@dataclass(frozen=True, slots=True)
class Membership:
    RECORD: ClassVar[str] = "membership"
    id: str  # membership file number
    member: str
    received_date: str
    acknowledged_date: str
    documents_sent_date: str


RECORD_TYPES: tuple[type[Claim | Complaint | Quote | Card | Membership], ...] = (
    Claim,
    Complaint,
    Quote,
    Card,
    Membership,
)


def member_records_key(number: str, record: str) -> str:
    return f"{keys.member(number)}:{record}"


def field_names(cls: type[Any]) -> list[str]:
    return [f.name for f in fields(cls)]


def required_field_names(cls: type[Any]) -> list[str]:
    """Columns an import file must have (the others have a default)."""
    return [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]


MEMBER_FIELDS = field_names(Member)


# KEYS: member records. ARGV: field names. Each record's fields, in order ("" when absent).
_READ_MANY = """
local out = {}
for i, k in ipairs(KEYS) do out[i] = redis.call('HMGET', k, unpack(ARGV)) end
return out
"""


class MemberStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._read_many = redis.register_script(_READ_MANY)
        # One script reads a whole batch on a single Redis (a round trip and a reply for 2,000 records);
        # on a cluster, whose scripts cannot span slots, a pipeline that the client splits by node.
        self.single_node = not isinstance(redis, RedisCluster)

    async def read_many(self, numbers: list[str]) -> list[dict[str, str]]:
        """The records of ``numbers`` as dicts of every member field ("" where absent; an unknown
        member's ``number`` is "")."""
        names = MEMBER_FIELDS
        if not numbers:
            return []
        if self.single_node:
            rows = await self._read_many(keys=[keys.member(n) for n in numbers], args=names)
        else:
            async with self.redis.pipeline(transaction=False) as pipe:
                for number in numbers:
                    pipe.hmget(keys.member(number), names)
                rows = await pipe.execute()
        return [dict(zip(names, (v or "" for v in row), strict=True)) for row in rows]

    def write(self, pipe: Any, member: Member) -> None:
        """Queue the writes of a member on a pipeline (re-writing is harmless)."""
        pipe.hset(keys.member(member.number), mapping=asdict(member))
        pipe.sadd(ALL_MEMBERS, member.number)
        if member.phone:
            pipe.set(keys.member_by_phone(member.phone), member.number)
        if member.email:
            pipe.set(keys.member_by_email(member.email), member.number)

    def write_record(self, pipe: Any, record: Claim | Complaint | Quote | Card | Membership) -> None:
        pipe.hset(
            member_records_key(record.member, record.RECORD),
            record.id,
            json.dumps(asdict(record), ensure_ascii=False),
        )
        if isinstance(record, Complaint):  # open complaints by due date, for the agents' console
            entry = f"{record.member} {record.id}"
            if record.status == "open" and record.due_date:
                due = dt.datetime.combine(dt.date.fromisoformat(record.due_date), dt.time(), dt.UTC)
                pipe.zadd(keys.COMPLAINTS_DUE, {entry: int(due.timestamp())})
            else:
                pipe.zrem(keys.COMPLAINTS_DUE, entry)

    async def get(self, number: str) -> Member | None:
        data = await self.redis.hgetall(keys.member(number))
        if not data:
            return None
        return Member(**{k: data.get(k, "") for k in field_names(Member)})

    async def records(self, number: str, record: str) -> list[dict[str, Any]]:
        raw = await self.redis.hgetall(member_records_key(number, record))
        return sorted((json.loads(v) for v in raw.values()), key=lambda r: str(r.get("id")))

    async def count(self) -> int:
        return int(await self.redis.scard(ALL_MEMBERS))
