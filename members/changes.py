"""The one write path of member records: the CSV import and the records API both end here.

A change is an upsert or a delete of one record (a member, or one of a member's claims, complaints,
quotes, cards, membership files). One script per change, in the member's hash tag, compares the
back office's version with the one kept beside the records (``mbr:{M…}:versions``, "<version>
<digest>" per record) and writes the record in the same step, so an older update never overwrites a
newer one, whoever writes first:

* a higher version is written; a lower one is refused (``conflict``, with the current version);
* the same version with the same content changes nothing (``unchanged``: a request sent twice), with
  other content it is refused (``conflict``);
* ``If-Match`` (``expect``) writes only over that exact version (else ``precondition_failed``), and
  the record then takes the next version;
* a delete leaves a tombstone with its version, so a late upsert cannot bring the record back;
* the import writes without a version (``version`` None): as before, it overwrites.

The indexes that live in other slots (every member, phone and e-mail lookups, complaints by due date)
are written after the script, for stored and unchanged changes alike: they are idempotent, so a
request retried after a crash repairs them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from redis.exceptions import NoScriptError

from gateway import keys
from members.records import (
    ALL_MEMBERS,
    RECORD_TYPES,
    Card,
    Claim,
    Complaint,
    Member,
    Membership,
    Quote,
    member_records_key,
)

Record = Member | Claim | Complaint | Quote | Card | Membership
# The API's names of the kinds of record, and what each is.
KINDS: dict[str, type[Any]] = {
    "members": Member,
    "claims": Claim,
    "complaints": Complaint,
    "quotes": Quote,
    "cards": Card,
    "memberships": Membership,
}
_KIND_OF_TYPE = {cls: kind for kind, cls in KINDS.items()}

# KEYS[1] = the member's versions, KEYS[2] = the record's hash (a member's own hash for "members"),
# KEYS[3..] = the member's record hashes (deleting a member). ARGV: 1 the record's version field,
# 2 version ("" = unversioned), 3 expected version (If-Match, "" = none), 4 digest ("deleted" for a
# delete), 5 op (put_field, put_hash, del_field, del_hash), 6 the field (its id), 7.. the payload (JSON
# for a field; name, value pairs for a member's hash).
# Returns {status, version, old phone, old e-mail, complaint ids removed (space-separated)}.
_CHANGE = r"""
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local cv, cd = 0, ''
if cur then
  local sp = string.find(cur, ' ', 1, true)
  cv = tonumber(string.sub(cur, 1, sp - 1)) or 0
  cd = string.sub(cur, sp + 1)
end
local op = ARGV[5]
local exists
if op == 'put_field' or op == 'del_field' then exists = redis.call('HEXISTS', KEYS[2], ARGV[6]) == 1
else exists = redis.call('EXISTS', KEYS[2]) == 1 end
local v
if ARGV[3] ~= '' then
  if (not exists) or tonumber(ARGV[3]) ~= cv then return {'precondition_failed', tostring(cv), '', '', ''} end
  if ARGV[2] ~= '' then v = tonumber(ARGV[2]) else v = cv + 1 end
  if v <= cv then return {'conflict', tostring(cv), '', '', ''} end
elseif ARGV[2] ~= '' then
  v = tonumber(ARGV[2])
  if v < cv then return {'conflict', tostring(cv), '', '', ''} end
  if v == cv and cur then
    if cd == ARGV[4] then return {'unchanged', tostring(cv), '', '', ''} end
    return {'conflict', tostring(cv), '', '', ''}
  end
else
  v = cv
end
if (op == 'del_field' or op == 'del_hash') and not exists and not cur then
  return {'not_found', tostring(cv), '', '', ''}
end
local old = redis.call('HMGET', KEYS[2], 'phone', 'email')
local removed = ''
if op == 'put_field' then
  redis.call('HSET', KEYS[2], ARGV[6], ARGV[7])
elseif op == 'put_hash' then
  local pairs_ = {}
  for i = 7, #ARGV do pairs_[#pairs_ + 1] = ARGV[i] end
  redis.call('HSET', KEYS[2], unpack(pairs_))
elseif op == 'del_field' then
  redis.call('HDEL', KEYS[2], ARGV[6])
else
  for i = 3, #KEYS do
    if string.sub(KEYS[i], -11) == ':complaints' then removed = table.concat(redis.call('HKEYS', KEYS[i]), ' ') end
  end
  for i = 2, #KEYS do redis.call('DEL', KEYS[i]) end
end
if ARGV[2] ~= '' or ARGV[3] ~= '' or cur then redis.call('HSET', KEYS[1], ARGV[1], tostring(v) .. ' ' .. ARGV[4]) end
local status = 'stored'
if op == 'del_field' or op == 'del_hash' then status = 'deleted' end
return {status, tostring(v), old[1] or '', old[2] or '', removed}
"""


@dataclass(frozen=True, slots=True)
class Change:
    kind: str  # a key of KINDS
    member: str
    id: str  # the member's number for "members"
    record: Record | None  # None: delete
    version: int | None = None  # the back office's version; None: unversioned (the import)
    expect: int | None = None  # If-Match: write only over this version


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # stored, unchanged, deleted, conflict, precondition_failed, not_found
    version: int


def kind_of(record: Record) -> str:
    return _KIND_OF_TYPE[type(record)]


def digest(record: Record) -> str:
    return hashlib.sha1(json.dumps(asdict(record), sort_keys=True).encode(), usedforsecurity=False).hexdigest()


class RecordWriter:
    """Applies changes in batches: one pipelined script per change, then the indexes of the others' slots."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self._sha = hashlib.sha1(_CHANGE.encode(), usedforsecurity=False).hexdigest()

    def _call(self, change: Change) -> tuple[list[str], list[str]]:
        member = change.member
        field = f"{change.kind}:{change.id}"
        version = "" if change.version is None else str(change.version)
        expect = "" if change.expect is None else str(change.expect)
        if change.kind == "members":
            record_keys = [member_records_key(member, rt.RECORD) for rt in RECORD_TYPES]
            if change.record is None:
                return [keys.member_versions(member), keys.member(member), *record_keys], [
                    field,
                    version,
                    expect,
                    "deleted",
                    "del_hash",
                    member,
                ]
            flat = [str(x) for pair in asdict(change.record).items() for x in pair]
            return [keys.member_versions(member), keys.member(member)], [
                field, version, expect, digest(change.record), "put_hash", member, *flat]  # fmt: skip
        record_key = member_records_key(member, KINDS[change.kind].RECORD)
        if change.record is None:
            return [keys.member_versions(member), record_key], [
                field,
                version,
                expect,
                "deleted",
                "del_field",
                change.id,
            ]
        body = json.dumps(asdict(change.record), ensure_ascii=False)
        return [keys.member_versions(member), record_key], [
            field, version, expect, digest(change.record), "put_field", change.id, body]  # fmt: skip

    async def _scripts(self, changes: list[Change]) -> list[Any]:
        calls = [self._call(c) for c in changes]
        for _ in range(2):
            async with self.redis.pipeline(transaction=False) as pipe:
                for ks, args in calls:
                    pipe.evalsha(self._sha, len(ks), *ks, *args)
                results = await pipe.execute(raise_on_error=False)
            if not any(isinstance(r, NoScriptError) for r in results):
                break
            await self.redis.script_load(_CHANGE)  # a fresh or failed-over Redis: loaded, then once more
        for r in results:
            if isinstance(r, Exception):
                raise r
        return list(results)

    async def apply(self, changes: list[Change]) -> list[Outcome]:
        if not changes:
            return []
        results = await self._scripts(changes)
        outcomes: list[Outcome] = []
        async with self.redis.pipeline(transaction=False) as pipe:
            for change, (status, version, old_phone, old_email, removed) in zip(changes, results, strict=True):
                outcomes.append(Outcome(str(status), int(version)))
                if status in ("stored", "unchanged"):
                    self._index(pipe, change, str(old_phone), str(old_email))
                elif status == "deleted":
                    self._unindex(pipe, change, str(old_phone), str(old_email), str(removed))
            await pipe.execute()
        return outcomes

    @staticmethod
    def _index(pipe: Any, change: Change, old_phone: str, old_email: str) -> None:
        record = change.record
        if isinstance(record, Member):
            pipe.sadd(ALL_MEMBERS, record.number)
            if record.phone:
                pipe.set(keys.member_by_phone(record.phone), record.number)
            if record.email:
                pipe.set(keys.member_by_email(record.email), record.number)
            # An address the member no longer has stops pointing at them (the lookup is theirs alone).
            if old_phone and old_phone != record.phone:
                pipe.delete(keys.member_by_phone(old_phone))
            if old_email and old_email != record.email:
                pipe.delete(keys.member_by_email(old_email))
            # Contribution calls by date, for the reminder a few days before (members/proactive.py).
            if record.contribution_call_date:
                call = dt.datetime.combine(dt.date.fromisoformat(record.contribution_call_date), dt.time(), dt.UTC)
                pipe.zadd(keys.CONTRIBUTION_CALLS, {record.number: int(call.timestamp())})
            else:
                pipe.zrem(keys.CONTRIBUTION_CALLS, record.number)
        elif isinstance(record, Complaint):  # open complaints by due date, for the agents' console
            entry = f"{record.member} {record.id}"
            if record.status == "open" and record.due_date:
                due = dt.datetime.combine(dt.date.fromisoformat(record.due_date), dt.time(), dt.UTC)
                pipe.zadd(keys.COMPLAINTS_DUE, {entry: int(due.timestamp())})
            else:
                pipe.zrem(keys.COMPLAINTS_DUE, entry)

    @staticmethod
    def _unindex(pipe: Any, change: Change, old_phone: str, old_email: str, removed: str) -> None:
        if change.kind == "members":
            pipe.srem(ALL_MEMBERS, change.member)
            pipe.zrem(keys.CONTRIBUTION_CALLS, change.member)
            if old_phone:
                pipe.delete(keys.member_by_phone(old_phone))
            if old_email:
                pipe.delete(keys.member_by_email(old_email))
            for ref in removed.split():
                pipe.zrem(keys.COMPLAINTS_DUE, f"{change.member} {ref}")
        elif change.kind == "complaints":
            pipe.zrem(keys.COMPLAINTS_DUE, f"{change.member} {change.id}")
