"""Members' rights and retention: everything held on a member, exported or erased, and old
conversations purged.

A member's data lives in several places; ``Footprint`` finds them all from the member number:
the member record and its claims, complaints, quotes, card and membership file; the contacts linked
to the member (by ``mbr:{n}:contacts``, by the registered phone and e-mail, and the Telegram chats the
member chose to have recognised, ``mbr:{n}:links``) with their addresses,
and the separate contact of mail sent under one of those e-mail addresses by an unproven sender;
every conversation of those contacts (messages, notes, one-time codes, the bot's tracker in Rasa's
Redis tracker store); campaign notices (``camp:{id}:r`` and the notice's conversation
``c.<campaign>.<member>``); callback requests made from one of the addresses; web chat delivery logs;
opt-outs; campaign audience lists; and the entries of the inbound and outbound streams (and their
dead letters and retry payloads) that carry one of the member's messages.

What campaigns hold (notices, plans, audience lists) they tell through a ``Notices`` holder the
composition root gives (``campaigns/privacy.py``): this room does not read another room's keys.

``export`` writes all of it as JSON. ``erase`` removes it, keeping only what must be kept as proof:
for each campaign notice its date, channel and delivery status (no text, no address), and the audit
trail (who saw which record when, by which channel: record ids, never their content), to which the
erasure itself is added. Stream entries still being handled are left and reported (run it again once
they are done). ``purge_conversations`` removes conversations whose last message is older than the
retention, and trims the streams to the same age; ``run_retention`` does it hourly, one process at
a time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from gateway import events, keys
from gateway.contacts import UNPROVEN
from gateway.envelope import now_ms
from gateway.redis_client import replace_hash
from members import links, proactive
from members.audit import audit
from members.records import ALL_MEMBERS, RECORD_TYPES, member_records_key

log = logging.getLogger(__name__)

CHANNELS = ("sms", "whatsapp", "telegram", "email", "webchat", "callback")
STREAM_KINDS = ("in", "out", "bulk")
PROVIDER_REF_TTL_S = 30 * 24 * 3600
# Fields of a notice's delivery record kept as proof after erasure (no text, no address).
PROOF_FIELDS = ("status", "queued_ms", "sending_ms", "sent_ms", "delivered_ms", "read_ms", "failed_ms",
                "undelivered_ms", "error_code", "created_ms")  # fmt: skip
RETENTION_LOCK = "gw:retention:lock"
RETENTION_INDEXED = "gw:retention:indexed"


def rasa_tracker(conv_id: str) -> str:
    """The bot's tracker of a conversation (Rasa's Redis tracker store, prefix ``rasa``: bot/manage.py)."""
    return f"rasa:tracker:{conv_id}"


class Notices(Protocol):
    """What the campaigns hold on a member, for access and erasure (``campaigns/privacy.py``)."""

    async def notices(self, number: str) -> dict[str, dict[str, Any]]:
        """Campaign id -> the campaign's record of its notice to the member (``conv``, ``msg``, ``channel``…)."""
        ...

    async def audience_lists(self, number: str) -> list[str]:
        """Ids of the campaigns whose audience list names the member."""
        ...

    async def forget(self, number: str) -> int:
        """No more notices to the member: removed from every campaign's plans and audience lists."""
        ...


@dataclass
class Footprint:
    member: str
    contacts: set[str] = field(default_factory=set)
    urns: set[str] = field(default_factory=set)
    conversations: set[str] = field(default_factory=set)  # the member's own conversations
    notices: dict[str, dict[str, Any]] = field(default_factory=dict)  # campaign id -> its record of the member
    callbacks: set[str] = field(default_factory=set)


@dataclass
class Erasure:
    member: str
    removed: dict[str, int] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)

    def count(self, what: str, n: int = 1) -> None:
        if n:
            self.removed[what] = self.removed.get(what, 0) + n


class MemberData:
    def __init__(
        self, redis: Redis, *, stream_shards: int, outbox: Path | None = None, notices: Notices | None = None
    ) -> None:
        self.redis = redis
        self.notices = notices
        self.shards = stream_shards
        self.outbox = outbox  # e-mails written to files when no SMTP relay is configured

    # Finding ------------------------------------------------------------------------------------------
    async def footprint(self, number: str) -> Footprint:
        fp = Footprint(number)
        record = await self.redis.hgetall(keys.member(number))
        fp.contacts |= set(await self.redis.smembers(keys.member_contacts(number)))
        for urn in _registered_urns(record):
            fp.urns.add(urn)
            contact = await self.redis.get(keys.address(urn))
            if contact:
                fp.contacts.add(str(contact))
        for contact in fp.contacts:
            await self._expand(fp, contact)
        # Mail stored under one of the member's addresses whose sender was not proven (DMARC failed at
        # the MX: gateway/contacts.py keeps it under a contact of its own, never linked to the member).
        # Whoever wrote it, it is held under the member's address: exported and erased with the rest.
        for urn in sorted(u for u in fp.urns if u.startswith("mailto:")):
            contact = await self.redis.get(keys.address(UNPROVEN + urn))
            if contact and str(contact) not in fp.contacts:
                fp.contacts.add(str(contact))
                await self._expand(fp, str(contact))
        if self.notices is not None:
            fp.notices = await self.notices.notices(number)
        phones = {u.removeprefix("tel:") for u in fp.urns if u.startswith("tel:")}
        if phones:
            async for rkey in self.redis.scan_iter(match=f"{keys.PREFIX}:callback:*", count=1000):
                if await self.redis.hget(rkey, "phone") in phones:
                    fp.callbacks.add(str(rkey))
        return fp

    async def _expand(self, fp: Footprint, contact: str) -> None:
        """Add a contact's addresses and conversations to the footprint."""
        fp.urns |= set(await self.redis.smembers(keys.contact_addresses(contact)))
        fp.conversations |= set(await self.redis.zrange(keys.contact_conversations(contact), 0, -1))
        for channel in CHANNELS:
            open_conv = await self.redis.get(keys.open_conversation(contact, channel))
            if open_conv:
                fp.conversations.add(str(open_conv))

    # Export -------------------------------------------------------------------------------------------
    async def export(self, number: str) -> dict[str, Any]:
        """Everything held on the member, as JSON-ready data (``found`` is False when nothing is)."""
        fp = await self.footprint(number)
        out: dict[str, Any] = {"member_number": number, "exported_at_ms": now_ms()}
        out["member"] = await self.redis.hgetall(keys.member(number)) or None
        out["records"] = {
            rt.RECORD: [
                json.loads(v) for v in (await self.redis.hgetall(member_records_key(number, rt.RECORD))).values()
            ]
            for rt in RECORD_TYPES
        }
        # Accounts the member chose to have recognised (a Telegram chat): members/links.py.
        out["linked_accounts"] = await links.links(self.redis, number)
        # What the member was told before asking (members/proactive.py): records told of and when, the
        # last message's records (for DETAIL), records the back office changed, messages still waiting.
        out["proactive"] = {
            "told": await self.redis.hgetall(keys.member_notices(number)),
            "last_message": json.loads(await self.redis.get(keys.member_last_notice(number)) or "null"),
            "changed": await self.redis.hgetall(keys.member_changes(number)),
            "waiting": [
                {"id": msg_id, "channel": m.channel, "address": m.urn, "text": m.text}
                for msg_id, m in sorted((await proactive.waiting_of(self.redis, number)).items())
            ],
        }
        out["contacts"] = [
            {
                **(await self.redis.hgetall(keys.contact(c))),
                "addresses": sorted(await self.redis.smembers(keys.contact_addresses(c))),
            }
            for c in sorted(fp.contacts)
        ]
        out["conversations"] = [await self._conversation_export(c) for c in sorted(fp.conversations)]
        notice_msgs = {rec["msg"] for rec in fp.notices.values() if rec.get("msg")}
        notice_convs = {rec["conv"] for rec in fp.notices.values() if rec.get("conv")}
        copies = await self._stream_copies(fp.urns, fp.conversations | notice_convs, notice_msgs)
        texts = {m.get("id"): m.get("text") for _, _, m in copies}
        notices = []
        for cid, rec in sorted(fp.notices.items()):
            item: dict[str, Any] = {"campaign": cid, **rec}
            if rec.get("msg"):
                stored = await self.redis.hgetall(keys.message(rec["conv"], rec["msg"]))
                item["delivery"] = {k: v for k, v in stored.items() if k != "m"}
                if rec["msg"] in texts:  # a notice's text is kept in the outbound stream only
                    item["text"] = texts[rec["msg"]]
            notices.append(item)
        out["notices"] = notices
        out["stream_entries"] = [{"stream": key, "entry": entry_id, "message": m} for key, entry_id, m in copies]
        out["callbacks"] = [await self.redis.hgetall(k) for k in sorted(fp.callbacks)]
        out["opt_outs"] = await self._opt_outs(fp.urns)
        out["audience_lists"] = await self.notices.audience_lists(number) if self.notices is not None else []
        out["audit"] = [
            {"id": entry_id, **fields} for entry_id, fields in await self.redis.xrange(keys.member_audit(number))
        ]
        out["found"] = bool(out["member"] or fp.contacts or fp.notices or out["audit"])
        return out

    async def _conversation_export(self, conv_id: str) -> dict[str, Any]:
        conv = await self.redis.hgetall(keys.conversation(conv_id))
        messages = []
        for msg_id in await self.redis.zrange(keys.conversation_log(conv_id), 0, -1):
            stored = await self.redis.hgetall(keys.message(conv_id, msg_id))
            if not stored.get("m"):
                continue
            m = json.loads(stored.pop("m"))
            messages.append({
                "id": m.get("id"), "direction": m.get("direction"), "channel": m.get("channel"),
                "address": m.get("urn"), "text": m.get("text"), "created_ms": m.get("created_ms"),
                "attachments": m.get("attachments") or [], "delivery": stored,
            })  # fmt: skip
        notes = [json.loads(n) for n in await self.redis.lrange(keys.conversation_notes(conv_id), 0, -1)]
        return {"id": conv_id, **conv, "messages": messages, "notes": notes}

    async def _stream_copies(
        self, urns: set[str], conv_ids: set[str], msg_ids: set[str]
    ) -> list[tuple[str, str, dict[str, Any]]]:
        """The member's messages as the streams (and their dead letters) still hold them."""
        found = []
        for kind in STREAM_KINDS:
            for shard in range(self.shards):
                for stream_key in (keys.stream(kind, shard), keys.dead(kind, shard)):
                    async for entry_id, payload in _entries(self.redis, stream_key):
                        m = _concerning(payload, urns, conv_ids, msg_ids)
                        if m is not None:
                            found.append((stream_key, entry_id, m))
        return found

    async def _opt_outs(self, urns: set[str]) -> list[dict[str, str]]:
        found = []
        for channel in CHANNELS:
            for kind, set_key in (("all", keys.opt_out(channel)), ("information", keys.info_opt_out(channel))):
                for urn in sorted(urns):
                    if await self.redis.sismember(set_key, urn):
                        found.append({"channel": channel, "kind": kind, "address": urn})
        return found

    # Erasure ------------------------------------------------------------------------------------------
    async def erase(self, number: str, *, by: str) -> Erasure:
        """Remove the member's personal data everywhere; keep the proof of notices and the audit trail."""
        fp = await self.footprint(number)
        report = Erasure(number)
        conv_ids = set(fp.conversations)
        msg_ids: set[str] = set()
        for conv_id in sorted(fp.conversations):
            msg_ids |= await self._drop_conversation(conv_id, report)
        # Campaigns: no more notices; each notice sent keeps its date, channel and status as proof.
        if self.notices is not None:
            report.count("campaign plans and audience lists", await self.notices.forget(number))
        for cid, rec in fp.notices.items():
            if rec.get("msg"):
                conv_ids.add(rec["conv"])
                msg_ids.add(rec["msg"])
                mkey = keys.message(rec["conv"], rec["msg"])
                stored = await self.redis.hgetall(mkey)
                proof = {k: v for k, v in stored.items() if k in PROOF_FIELDS}
                await replace_hash(self.redis, mkey, proof)
                if stored.get("external_id"):
                    await self.redis.delete(keys.provider_ref(rec.get("channel", ""), stored["external_id"]))
                await self.redis.delete(keys.conversation_log(rec["conv"]), keys.conversation(rec["conv"]))
                report.count("notice texts")
            report.kept.append(
                f"campagne {cid} : date, canal et statut de l'avis ({rec.get('channel') or 'courrier'}), sans texte ni adresse"
            )
        # Addresses, contacts, opt-outs, web chat logs, callbacks.
        for urn in fp.urns:
            deleted = await self.redis.delete(
                keys.address(urn), keys.flood_told(urn), keys.rate(f"flood:{urn}"),
                *((keys.webchat_outbox(urn[8:]), keys.webchat_shown(urn[8:])) if urn.startswith("webchat:") else ()),
                *((keys.email_sender_pace(urn[7:]), keys.address(UNPROVEN + urn)) if urn.startswith("mailto:") else ()),
            )  # fmt: skip
            report.count("addresses and web chat logs", deleted)
            for channel in CHANNELS:
                removed = await self.redis.srem(keys.opt_out(channel), urn)
                removed += await self.redis.srem(keys.info_opt_out(channel), urn)
                report.count("opt-outs", removed)
        for contact in fp.contacts:
            report.count("contacts", await self.redis.delete(
                keys.contact(contact), keys.contact_addresses(contact), keys.contact_conversations(contact),
                keys.survey_pending(contact), *(keys.open_conversation(contact, c) for c in CHANNELS),
            ))  # fmt: skip
        for rkey in fp.callbacks:
            cb_id = rkey.rsplit("{", 1)[-1].rstrip("}")
            await self.redis.zrem(keys.CALLBACKS_DUE, cb_id)
            reference = await self.redis.hget(rkey, "ref")
            if reference and await self.redis.get(keys.callback_ref(reference)) == cb_id:
                await self.redis.delete(keys.callback_ref(reference))  # the short reference, free again
            report.count("callback requests", await self.redis.delete(rkey))
        # Streams: every entry carrying one of the member's messages or addresses.
        report.count("stream entries", await self._scrub_streams(fp.urns, conv_ids, msg_ids, report))
        # The member record and its indexes.
        record = await self.redis.hgetall(keys.member(number))
        for urn in _registered_urns(record):
            index = keys.member_by_phone(urn[4:]) if urn.startswith("tel:") else keys.member_by_email(urn[7:])
            if await self.redis.get(index) == number:
                await self.redis.delete(index)
        complaints = await self.redis.hkeys(member_records_key(number, "complaints"))
        if complaints:
            await self.redis.zrem(keys.COMPLAINTS_DUE, *(f"{number} {ref}" for ref in complaints))
        report.count("member record and files", await self.redis.delete(
            keys.member(number), keys.member_contacts(number), *(member_records_key(number, rt.RECORD) for rt in RECORD_TYPES),
            keys.member_versions(number),  # the records API's versions (digests of the records)
            keys.member_notices(number), keys.member_last_notice(number), keys.member_changes(number),
            keys.member_links(number),  # accounts linked by consent (their contacts went with the others)
        ))  # fmt: skip
        await self.redis.srem(ALL_MEMBERS, number)
        await self.redis.zrem(keys.CONTRIBUTION_CALLS, number)
        report.count("messages waiting for their channel's hours", await proactive.drop_waiting(self.redis, number))
        # What the member was told of, change by change (members/proactive.py), in the member's slot.
        async for told in self.redis.scan_iter(match=f"{keys.member(number)}:told:*", count=1000):
            await self.redis.delete(told)
        await audit(self.redis, number, "", "console", "erased", [], agent=by)
        await events.emit(self.redis, events.MEMBER_ERASED, number, {"member": number})  # the back office erases too
        report.kept.append(
            "journal d'audit : qui a consulté quel dossier, quand et par quel canal (identifiants, sans contenu)"
        )
        return report

    async def _drop_conversation(self, conv_id: str, report: Erasure) -> set[str]:
        """Delete a conversation with everything hanging from it; returns its message ids."""
        conv = await self.redis.hgetall(keys.conversation(conv_id))
        msg_ids = set(await self.redis.zrange(keys.conversation_log(conv_id), 0, -1))
        doomed = [keys.conversation(conv_id), keys.conversation_log(conv_id), keys.conversation_notes(conv_id),
                  keys.conversation_otp(conv_id), rasa_tracker(conv_id)]  # fmt: skip
        for msg_id in msg_ids:
            stored = await self.redis.hgetall(keys.message(conv_id, msg_id))
            if stored.get("m"):
                m = json.loads(stored["m"])
                ref = (m.get("meta") or {}).get("message_id")
                if ref:
                    doomed.append(keys.email_thread(str(ref)))
                if stored.get("external_id"):
                    doomed.append(keys.provider_ref(str(m.get("channel", "")), stored["external_id"]))
                    if m.get("channel") == "email":
                        doomed.append(keys.email_thread(stored["external_id"]))
                if self.outbox is not None and m.get("channel") == "email" and m.get("direction") == "out":
                    (self.outbox / f"{msg_id}.eml").unlink(missing_ok=True)  # mail kept when no relay is set
            doomed += [keys.message(conv_id, msg_id), keys.handled(conv_id, msg_id)]
        async for extra in self.redis.scan_iter(match=f"{keys.PREFIX}:conv:{{{conv_id}}}:complaint:*", count=1000):
            doomed.append(str(extra))
        await self.redis.zrem(keys.HANDOFF_QUEUE, conv_id)
        if conv.get("assigned_agent"):
            await self.redis.srem(keys.agent_conversations(conv["assigned_agent"]), conv_id)
        if conv.get("contact_id") and conv.get("channel"):
            open_key = keys.open_conversation(conv["contact_id"], conv["channel"])
            if await self.redis.get(open_key) == conv_id:
                doomed.append(open_key)
        await self.redis.zrem(keys.RETENTION_INDEX, conv_id)
        for chunk in range(0, len(doomed), 500):
            await self.redis.delete(*doomed[chunk : chunk + 500])
        report.count("conversations")
        report.count("messages", len(msg_ids))
        return msg_ids

    async def _scrub_streams(self, urns: set[str], conv_ids: set[str], msg_ids: set[str], report: Erasure) -> int:
        removed = 0
        for kind in STREAM_KINDS:
            for shard in range(self.shards):
                pending = await self._pending(keys.stream(kind, shard))
                for stream_key in (keys.stream(kind, shard), keys.dead(kind, shard)):
                    doomed: list[str] = []
                    async for entry_id, payload in _entries(self.redis, stream_key):
                        if _concerning(payload, urns, conv_ids, msg_ids) is not None:
                            if entry_id in pending and stream_key == keys.stream(kind, shard):
                                report.kept.append(f"1 message en cours de traitement ({kind}) : relancer l'effacement")
                                continue
                            doomed.append(entry_id)
                    if doomed:
                        removed += int(await self.redis.xdel(stream_key, *doomed))
                if kind == "out" and msg_ids:
                    removed += int(await self.redis.hdel(keys.retry_payload(shard), *msg_ids))
                    await self.redis.zrem(keys.retry(shard), *msg_ids)
        return removed

    async def _pending(self, stream_key: str) -> set[str]:
        ids: set[str] = set()
        try:
            groups = await self.redis.xinfo_groups(stream_key)
        except ResponseError:  # no stream yet
            return ids
        for group in groups:
            for item in await self.redis.xpending_range(stream_key, group["name"], "-", "+", 100_000):
                ids.add(str(item["message_id"]))
        return ids

    # Retention ----------------------------------------------------------------------------------------
    async def purge_conversations(self, older_than_ms: int) -> dict[str, int]:
        """Remove conversations whose last message is older than ``older_than_ms`` (epoch ms), and the
        stream entries older than that; campaign notices' proofs are not conversations and stay."""
        await self.ensure_retention_index()
        report = Erasure("")
        purged = 0
        while True:
            batch = await self.redis.zrangebyscore(keys.RETENTION_INDEX, "-inf", older_than_ms, start=0, num=200)
            if not batch:
                break
            for conv_id in batch:
                last = await self.redis.hget(keys.conversation(conv_id), "last_ms")
                if last and int(last) > older_than_ms:  # written to since it was indexed
                    await self.redis.zadd(keys.RETENTION_INDEX, {conv_id: int(last)})
                    continue
                await self._drop_conversation(conv_id, report)
                purged += 1
        trimmed = 0
        for kind in STREAM_KINDS:
            for shard in range(self.shards):
                for stream_key in (keys.stream(kind, shard), keys.dead(kind, shard)):
                    trimmed += int(await self.redis.xtrim(stream_key, minid=f"{older_than_ms}-0", approximate=False))
        return {"conversations": purged, "messages": report.removed.get("messages", 0), "stream_entries": trimmed}

    async def ensure_retention_index(self) -> None:
        """Conversations stored before the index existed are indexed once, by their last message."""
        if await self.redis.exists(RETENTION_INDEXED):
            return
        async for conv_key in self.redis.scan_iter(match=f"{keys.PREFIX}:conv:{{*}}", count=1000):
            conv_id = str(conv_key)[len(keys.PREFIX) + 7 : -1]
            last = await self.redis.hget(conv_key, "last_ms") or await self.redis.hget(conv_key, "created_ms")
            if last:
                await self.redis.zadd(keys.RETENTION_INDEX, {conv_id: int(last)}, nx=True)
        await self.redis.set(RETENTION_INDEXED, "1")


async def run_retention(
    redis: Redis, *, shards: int, days: int, every_s: float, stop: asyncio.Event, outbox: Path | None = None
) -> None:
    """Purge conversations older than ``days`` every ``every_s`` seconds; one process at a time."""
    data = MemberData(redis, stream_shards=shards, outbox=outbox)
    while not stop.is_set():
        if days > 0 and await redis.set(RETENTION_LOCK, "1", nx=True, ex=max(1, int(every_s * 0.9))):
            started = time.monotonic()
            done = await data.purge_conversations(now_ms() - days * 86_400_000)
            log.info(
                "retention purge",
                extra={**done, "retention_days": days, "elapsed_s": round(time.monotonic() - started, 2)},
            )
        try:
            await asyncio.wait_for(stop.wait(), timeout=every_s)
        except TimeoutError:
            pass


def _registered_urns(record: dict[str, str]) -> list[str]:
    out = []
    if record.get("phone"):
        out.append(f"tel:{record['phone']}")
    if record.get("email"):
        out.append(f"mailto:{record['email'].lower()}")
    return out


async def _entries(redis: Redis, stream_key: str, chunk: int = 1000) -> AsyncIterator[tuple[str, str]]:
    start = "-"
    while True:
        batch = await redis.xrange(stream_key, min=start, max="+", count=chunk)
        for entry_id, fields in batch:
            yield str(entry_id), str(fields.get("m", ""))
        if len(batch) < chunk:
            return
        start = "(" + str(batch[-1][0])


def _concerning(payload: str, urns: set[str], conv_ids: set[str], msg_ids: set[str]) -> dict[str, Any] | None:
    """The stream entry's message if it is one of the member's (by address, conversation or id)."""
    try:
        m = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(m, dict):
        return None
    mine = m.get("urn") in urns or m.get("conversation_id") in conv_ids or m.get("id") in msg_ids
    return m if mine else None
