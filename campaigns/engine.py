"""Planning and sending campaigns, exactly one notice per member, provably on time.

Planning (``schedule``) walks the audience once: each member gets a planned send time in the
campaign's due set (``camp:{id}:due``, score = epoch seconds) and a deadline (the end of their
latest notice date, in ``camp:{id}:deadline``). A schedule that cannot reach everyone in time is
refused with the latest allowed date.

Sending (``tick``, in every worker process) claims due members with a script that moves them to
an in-flight set, renders each notice and hands it to the gateway's outbound stream under the id
``c.<campaign>.<member>.<attempt>``: the stream's de-duplication makes a replay after a kill -9
harmless, so each member gets one notice per attempt, and a second attempt (next channel) only
when the first failed or was not delivered in time. In-flight members left by a dead process go
back to the due set after ``RECLAIM_S``. A watchdog (``camp:{id}:watch``) checks each notice's
delivery and falls back to the next channel; members no digital channel reaches are listed for
postal mail (``camp:{id}:postal``) well before their deadline.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from redis.asyncio import Redis

from campaigns.model import (
    ALL,
    CHANNELS,
    Campaign,
    CampaignError,
    context,
    from_input,
    hour,
    key,
    long_datetime,
    parse_member_file,
)
from campaigns.render import Renderer, RenderError
from campaigns.rules import PARIS, Estimate, end_of_day, estimate, fr_date, latest_notice_date
from campaigns.variables import NEW, Findings, needed, resolve
from gateway import events, keys
from gateway.envelope import Message
from members.records import ALL_MEMBERS, MemberStore

log = logging.getLogger(__name__)

RECLAIM_S = 120
BATCH = 500
LANE = 250  # notices rendered and queued together (see _send_due)
DELIVERY_WAIT_S = {"sms": 4 * 3600, "whatsapp": 4 * 3600, "email": 30}  # then the watchdog looks at the notice's status
# An e-mail accepted by the relay may still bounce: it is done once this long passed without a bounce
# (a bounce that arrives reports the notice failed and brings the watchdog back at once, see recheck).
BOUNCE_WAIT_S = 4 * 3600
DELIVERED = ("delivered", "read")
FAILED = ("failed", "undelivered", "canceled")

# KEYS: due, inflight. ARGV: now (s), limit. Moves due members to in-flight and returns them: the
# due set's lowest scores, so they leave it by rank in one command, and enter in-flight by thousands.
_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #ids == 0 then return ids end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, #ids - 1)
local args = {}
for i, id in ipairs(ids) do
  args[#args + 1] = ARGV[1]
  args[#args + 1] = id
  if #args >= 2000 or i == #ids then
    redis.call('ZADD', KEYS[2], unpack(args))
    args = {}
  end
end
return ids
"""
# KEYS: inflight, due. ARGV: older than (s). Members a dead process held go back to be sent.
_RECLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZADD', KEYS[2], 0, id)
end
return #ids
"""


def now_s() -> float:
    return time.time()


def address(member: dict[str, str], channel: str) -> str | None:
    if channel == "sms" and member.get("phone"):
        return f"tel:{member['phone']}"
    if channel == "whatsapp" and member.get("phone"):  # the member's registered phone, on WhatsApp
        return f"whatsapp:{member['phone']}"
    if channel == "email" and member.get("email"):
        return f"mailto:{member['email']}"
    return None


class Campaigns:
    def __init__(
        self,
        redis: Redis,
        *,
        enqueue: Callable[[list[Message]], Awaitable[int]] | None = None,
        enabled_channels: tuple[str, ...] = ("email", "sms"),
        rates: dict[str, float] | None = None,
        reclaim_s: float = RECLAIM_S,
    ) -> None:
        self.redis = redis
        self.reclaim_s = reclaim_s
        self.enqueue_many = enqueue
        self.enabled = enabled_channels
        self.rates = rates or {"email": 20.0, "sms": 10.0}
        self._claim = redis.register_script(_CLAIM)
        self._reclaim = redis.register_script(_RECLAIM)
        self._renderers: dict[str, Renderer] = {}
        self.store = MemberStore(redis)

    # Storage --------------------------------------------------------------------------------
    async def save(self, campaign: Campaign) -> None:
        await self.redis.hset(key(campaign.id), mapping={"def": campaign.to_json(), "state": campaign.state})
        await self.redis.zadd(ALL, {campaign.id: campaign.created_ms or int(now_s() * 1000)})

    async def get(self, campaign_id: str) -> Campaign | None:
        raw = await self.redis.hget(key(campaign_id), "def")
        if not raw:
            return None
        campaign = Campaign.from_json(raw)
        campaign.state = str(await self.redis.hget(key(campaign_id), "state") or campaign.state)
        return campaign

    async def all(self, limit: int = 100) -> list[Campaign]:
        out = []
        for cid in await self.redis.zrevrange(ALL, 0, limit - 1):
            campaign = await self.get(cid)
            if campaign is not None:
                out.append(campaign)
        return out

    async def set_state(self, campaign: Campaign, state: str, **fields: str) -> None:
        campaign.state = state
        await self.redis.hset(key(campaign.id), mapping={"def": campaign.to_json(), "state": state, **fields})

    # Audience --------------------------------------------------------------------------------
    async def members(self, campaign: Campaign, today: dt.date | None = None) -> AsyncIterator[dict[str, str]]:
        """The audience's member records, in batches read with one round trip each."""
        async for batch in self.member_batches(campaign, today):
            for member in batch:
                yield member

    async def member_batches(
        self, campaign: Campaign, today: dt.date | None = None
    ) -> AsyncIterator[list[dict[str, str]]]:
        """The audience's member records, a batch per round trip (sorted by member number)."""
        today = today or dt.datetime.now(PARIS).date()
        if campaign.audience.uploaded:
            candidates: AsyncIterator[list[str]] = _scan(self.redis, key(campaign.id, "list"))
        elif campaign.audience.members:
            candidates = _chunks(sorted(set(campaign.audience.members)))
        else:
            candidates = _scan(self.redis, ALL_MEMBERS)
        async for batch in candidates:
            found = [
                m for m in await self.store.read_many(batch) if m["number"] and campaign.audience.matches(m, today)
            ]
            if found:
                yield found

    # Per-member values --------------------------------------------------------------------------
    async def own_values(self, campaign: Campaign, numbers: list[str]) -> list[dict[str, str]]:
        """Each member's row of the campaign's per-member file ({} without one), one round trip."""
        if not campaign.variables or not numbers:
            return [{} for _ in numbers]
        raw = await self.redis.hmget(key(campaign.id, "vars"), numbers)
        return [orjson.loads(r) if r else {} for r in raw]

    def variables(self, campaign: Campaign, member: dict[str, str], own: dict[str, str]) -> dict[str, Any]:
        """What this member's notice sees (``campaigns/variables.py``), figures as of the effective date."""
        try:
            on = dt.date.fromisoformat(campaign.effective_date or member.get(campaign.date_field, ""))
        except ValueError:
            on = dt.datetime.now(PARIS).date()
        return resolve(campaign.values, member, own, on)

    def findings(self, campaign: Campaign) -> tuple[Findings, Callable[[dict[str, str], dict[str, Any]], None]]:
        """A fresh record of problems and the function that checks one member against the templates."""
        renderer = self.renderer(campaign)
        names = needed(renderer.names())
        fields = renderer.member_fields() or set()
        bounded = campaign.kind == "contribution_change" or NEW in names
        found = Findings(max_change_percent=campaign.max_change_percent)

        def check(member: dict[str, str], variables: dict[str, Any]) -> None:
            found.check(member["number"], variables, names, fields, member, bounded)

        return found, check

    async def checked_batches(
        self, campaign: Campaign, findings: Callable[[dict[str, str], dict[str, Any]], None]
    ) -> AsyncIterator[list[dict[str, str]]]:
        """The audience, each member checked (missing values, bounds) on the way."""
        async for batch in self.member_batches(campaign):
            owns = await self.own_values(campaign, [m["number"] for m in batch])
            for member, own in zip(batch, owns, strict=True):
                findings(member, self.variables(campaign, member, own))
            yield batch

    async def preview(self, campaign: Campaign, n: int = 3) -> list[dict[str, Any]]:
        """The notices of the audience's first ``n`` members, per channel, with their figures; a notice
        that cannot be written says why instead."""
        out: list[dict[str, Any]] = []
        renderer = self.renderer(campaign)
        async for batch in self.member_batches(campaign):
            batch = batch[: n - len(out)]
            owns = await self.own_values(campaign, [m["number"] for m in batch])
            for member, own in zip(batch, owns, strict=True):
                variables = self.variables(campaign, member, own)
                channels: dict[str, Any] = {}
                error = ""
                for channel in campaign.channels:
                    try:
                        channels[channel] = renderer.render(
                            channel, member, context(campaign, member), variables
                        ).preview()
                    except RenderError as exc:
                        error = f"Notice impossible à écrire pour {member['number']} : {exc}"
                figures = {k: str(variables[k]) for k in ("current_contribution", NEW, "change_eur", "change_percent")
                           if str(variables.get(k, "")) != ""}  # fmt: skip
                out.append({"member": member["number"], "name": f"{member['first_name']} {member['last_name']}".strip(),
                            "channels": channels, "figures": figures, "error": error})  # fmt: skip
            if len(out) >= n:
                break
        return out

    async def update(self, campaign: Campaign, data: dict[str, Any]) -> Campaign:
        """A draft edited: validated again as a whole, its list and per-member values kept."""
        if campaign.state != "draft":
            raise CampaignError({"state": "seul un brouillon se modifie (mettez en pause ou annulez la campagne)"})
        edited = from_input(data, existing=campaign)
        await self.save(edited)
        return edited

    async def import_list(self, campaign: Campaign, text: str) -> dict[str, Any]:
        """A draft's audience from an uploaded file of member numbers (see ``parse_member_list``), kept
        in Redis whatever its size; the filters still apply. Replaces a previous list."""
        if campaign.state != "draft":
            raise CampaignError({"file": "la liste d'une campagne se change tant qu'elle est un brouillon"})
        parsed = parse_member_file(text)
        numbers, bad = parsed.numbers, parsed.bad
        if not numbers:
            raise CampaignError({"file": "aucun numéro d'adhérent reconnu dans ce fichier (un numéro par ligne, "
                                         "ou une colonne « numéro » d'un fichier CSV)"})  # fmt: skip
        lkey, vkey = key(campaign.id, "list"), key(campaign.id, "vars")
        await self.redis.delete(lkey, vkey)
        unknown = 0
        for i in range(0, len(numbers), 5000):
            chunk = numbers[i : i + 5000]
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.sadd(lkey, *chunk)
                pipe.smismember(ALL_MEMBERS, chunk)
                if parsed.variables:  # in Redis, under the campaign's hash tag: every worker reads them
                    pipe.hset(vkey, mapping={n: orjson.dumps(parsed.values[n]).decode() for n in chunk})
                found = await pipe.execute()
            unknown += sum(1 for k in found[1] if not int(k))
        campaign.audience.uploaded = len(numbers)
        campaign.variables = parsed.variables
        await self.save(campaign)
        return {"members": len(numbers), "unknown": unknown, "bad_lines": bad[:20], "bad_count": len(bad),
                "variables": parsed.variables}  # fmt: skip

    def first_channel(self, campaign: Campaign, member: dict[str, str], opted_out: dict[str, set[str]]) -> str | None:
        for channel in campaign.channels:
            urn = address(member, channel)
            if channel in self.enabled and urn and urn not in opted_out.get(channel, set()):
                return channel
        return None

    @staticmethod
    def opt_out_sets(campaign: Campaign, channel: str) -> list[str]:
        """The sets of addresses not to use on ``channel``: opted out of everything (STOP), and for
        information that is not mandatory, also those that declined it (List-Unsubscribe)."""
        return [keys.opt_out(channel)] + ([] if campaign.mandatory else [keys.info_opt_out(channel)])

    async def opted_out(self, campaign: Campaign) -> dict[str, set[str]]:
        """Addresses not to use, per channel (``opt_out_sets``)."""
        out: dict[str, set[str]] = {c: set() for c in CHANNELS}
        for channel in out:
            for set_key in self.opt_out_sets(campaign, channel):
                out[channel] |= set(await self.redis.smembers(set_key))
        return out

    async def opted_out_among(self, campaign: Campaign, members: list[dict[str, str]]) -> dict[str, set[str]]:
        """As ``opted_out``, only for these members' addresses: one SMISMEMBER per set, not whole sets
        loaded for every batch of notices (opt-out sets grow with a mutuelle's members)."""
        wanted = {c: sorted({a for m in members if (a := address(m, c))}) for c in CHANNELS}
        sets = [(c, set_key) for c in wanted if wanted[c] for set_key in self.opt_out_sets(campaign, c)]
        out: dict[str, set[str]] = {c: set() for c in wanted}
        if not sets:
            return out
        async with self.redis.pipeline(transaction=False) as pipe:
            for channel, set_key in sets:
                pipe.smismember(set_key, wanted[channel])
            found = await pipe.execute()
        for (channel, _), hits in zip(sets, found, strict=True):
            out[channel].update(a for a, hit in zip(wanted[channel], hits, strict=True) if hit)
        return out

    async def count(self, campaign: Campaign) -> dict[str, Any]:
        """Audience size and the channel each member would get now (``none``: postal mail)."""
        opted = await self.opted_out(campaign)
        by_channel: Counter[str] = Counter()
        found, check = self.findings(campaign)
        async for batch in self.checked_batches(campaign, check):
            for member in batch:
                by_channel[self.first_channel(campaign, member, opted) or "none"] += 1
        if found.errors():  # each member's figures are checked before anyone relies on the count
            raise CampaignError(found.errors())
        return {"total": sum(by_channel.values()), "by_channel": dict(by_channel)}

    # Planning ----------------------------------------------------------------------------------
    def deadline_of(self, campaign: Campaign, member: dict[str, str]) -> dt.date | None:
        effective = campaign.effective_date or member.get(campaign.date_field, "")
        try:
            return latest_notice_date(dt.date.fromisoformat(effective))
        except ValueError:
            return None

    async def schedule(
        self,
        campaign: Campaign,
        start_at: dt.datetime,
        *,
        now: dt.datetime | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Plan every member's notice, or refuse (CampaignError) naming the latest allowed date."""
        if campaign.state != "draft":
            raise CampaignError({"state": "seul un brouillon se programme"})
        now = (now or dt.datetime.now(PARIS)).astimezone(PARIS)
        window = campaign.send_window()
        start = window.next_open(max(start_at.astimezone(PARIS), now))
        opted = await self.opted_out(campaign)
        plan: list[tuple[str, float, float]] = []  # member, planned (s), deadline (s)
        counts: Counter[str] = Counter()
        late: list[dt.date] = []
        no_date = 0
        per_day: dict[dt.date, Counter[str]] = {}
        found, check = self.findings(campaign)
        async for member in _each(self.checked_batches(campaign, check)):
            deadline_day = self.deadline_of(campaign, member)
            if deadline_day is None:
                no_date += 1
                continue
            deadline = end_of_day(deadline_day)
            channel = self.first_channel(campaign, member, opted) or "none"
            counts[channel] += 1
            if campaign.effective_date:
                planned = start
            else:  # each member's own date: a few days before their deadline, inside the window
                target = dt.datetime.combine(deadline_day - dt.timedelta(days=campaign.lead_days), window.start, PARIS)
                planned = _last_open_at_or_before(window, target)
                if planned < start:
                    planned = start
                per_day.setdefault(planned.date(), Counter())[channel] += 1
            if planned > deadline:
                late.append(deadline_day)
            plan.append((member["number"], planned.timestamp(), deadline.timestamp()))
            if progress is not None:
                progress(1)
        if found.errors():
            raise CampaignError(found.errors())
        if not plan:
            raise CampaignError({"audience": "aucun adhérent ne correspond à cette audience"})
        if late:
            raise CampaignError({"start_at": (
                f"{len(late)} adhérent(s) ne seraient pas prévenus à temps : la dernière date d'envoi possible "
                f"pour eux est le {fr_date(min(late))}. Choisissez un départ plus tôt ou une date d'effet plus tardive."
            )})  # fmt: skip
        sendable = {c: n for c, n in counts.items() if c != "none"}
        if campaign.effective_date:
            latest = latest_notice_date(dt.date.fromisoformat(campaign.effective_date))
            est = estimate(sendable, self.rates, start, window)
            if est.finish > end_of_day(latest):
                raise CampaignError({"start_at": (
                    f"L'envoi se terminerait le {fr_date(est.finish.date())} à {est.finish:%H:%M}, après la dernière "
                    f"date d'envoi possible, le {fr_date(latest)} (un mois avant le {fr_date(dt.date.fromisoformat(campaign.effective_date))}). "
                    "Programmez un départ plus tôt ou élargissez la fenêtre d'envoi."
                )})  # fmt: skip
        else:
            est = self._busiest_day(per_day, window)
        await self._write_plan(campaign, plan)
        await self.set_state(
            campaign,
            "scheduled",
            start_at=start.isoformat(),
            planned=str(len(plan)),
            unreachable_planned=str(counts["none"]),
        )
        campaign.start_at = start.isoformat()
        await self.save(campaign)
        return {
            "planned": len(plan),
            "without_date": no_date,
            "by_channel": dict(counts),
            "start": start.isoformat(),
            "estimated_seconds": est.seconds,
            "estimated_finish": est.finish.isoformat(),
        }

    def _busiest_day(self, per_day: dict[dt.date, Counter[str]], window: Any) -> Estimate:
        worst: Estimate | None = None
        for day, counts in sorted(per_day.items()):
            opening = dt.datetime.combine(day, window.start, PARIS)
            est = estimate({c: n for c, n in counts.items() if c != "none"}, self.rates, opening, window)
            if est.finish.date() != day:
                raise CampaignError({"start_at": (
                    f"Trop de notices le {fr_date(day)} pour la fenêtre d'envoi et les débits des fournisseurs : "
                    "élargissez la fenêtre ou réduisez l'avance (lead_days)."
                )})  # fmt: skip
            if worst is None or est.seconds > worst.seconds:
                worst = est
        assert worst is not None
        return worst

    async def _write_plan(self, campaign: Campaign, plan: list[tuple[str, float, float]]) -> None:
        for i in range(0, len(plan), 5000):
            chunk = plan[i : i + 5000]
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zadd(key(campaign.id, "due"), {m: p for m, p, _ in chunk})
                pipe.hset(key(campaign.id, "deadline"), mapping={m: str(int(d)) for m, _, d in chunk})
                await pipe.execute()

    # Controls -------------------------------------------------------------------------------------
    async def pause(self, campaign: Campaign) -> None:
        if campaign.state not in ("scheduled", "sending"):
            raise CampaignError({"state": "seule une campagne programmée ou en cours se met en pause"})
        await self.set_state(campaign, "paused", paused_from=campaign.state)

    async def resume(self, campaign: Campaign) -> None:
        if campaign.state != "paused":
            raise CampaignError({"state": "cette campagne n'est pas en pause"})
        before = await self.redis.hget(key(campaign.id), "paused_from") or "scheduled"
        await self.set_state(campaign, str(before))

    async def cancel(self, campaign: Campaign) -> None:
        if campaign.state in ("done", "cancelled"):
            raise CampaignError({"state": "cette campagne est déjà terminée"})
        await self.set_state(campaign, "cancelled")
        await self.redis.delete(key(campaign.id, "due"), key(campaign.id, "watch"))

    # Sending ----------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event, every_s: float = 1.0) -> None:
        """The worker's loop: every second, send what is due and check what was sent."""
        while not stop.is_set():
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("campaign tick failed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=every_s)
            except TimeoutError:
                pass

    async def tick(self, now: float | None = None) -> int:
        """One round over active campaigns; returns the notices handed to the outbound stream."""
        now = now if now is not None else now_s()
        sent = 0
        for cid in await self.redis.zrevrange(ALL, 0, 200):
            state = await self.redis.hget(key(cid), "state")
            if state not in ("scheduled", "sending"):
                continue
            campaign = await self.get(cid)
            if campaign is None:
                continue
            sent += await self._send_due(campaign, now)
            await self._watch(campaign, now)
            await self._maybe_done(campaign)
        return sent

    def renderer(self, campaign: Campaign) -> Renderer:
        """The campaign's compiled templates, kept per process for as long as its templates and values
        stay the same (a draft edited through another process gets a fresh one)."""
        sig = f"{campaign.id}:{hash(orjson.dumps([campaign.templates, campaign.values], option=orjson.OPT_SORT_KEYS))}"
        if sig not in self._renderers:
            if len(self._renderers) > 200:
                self._renderers.clear()
            self._renderers[sig] = Renderer(campaign.templates, campaign.values)
        return self._renderers[sig]

    async def _send_due(self, campaign: Campaign, now: float, limit: int | None = None) -> int:
        if not campaign.send_window().contains(dt.datetime.fromtimestamp(now, PARIS)):
            return 0
        await self._reclaim(keys=[key(campaign.id, "inflight"), key(campaign.id, "due")], args=[now - self.reclaim_s])
        if limit is None:
            limit = max(50, min(BATCH, int(2 * sum(self.rates.get(c, 1.0) for c in campaign.channels))))
        claimed = [str(n) for n in await self._claim(
            keys=[key(campaign.id, "due"), key(campaign.id, "inflight")], args=[now, limit]
        )]  # fmt: skip
        if not claimed:
            return 0
        if campaign.state == "scheduled":
            await self.set_state(campaign, "sending", started_ms=str(int(now * 1000)))
        # Lanes of a few hundred notices run side by side: one renders while Redis works for another.
        # A lane that fails leaves its members in flight, taken back after ``reclaim_s``.
        lanes = [claimed[i : i + LANE] for i in range(0, len(claimed), LANE)]
        done = await asyncio.gather(
            *(self._notify_many(campaign, [(n, ()) for n in lane], now) for lane in lanes),
            return_exceptions=True,
        )
        for outcome in done:
            if isinstance(outcome, BaseException):
                raise outcome
        return sum(int(n) for n in done if not isinstance(n, BaseException))

    async def _notify(self, campaign: Campaign, number: str, now: float, tried: tuple[str, ...]) -> bool:
        return await self._notify_many(campaign, [(number, tried)], now) == 1

    async def _notify_many(self, campaign: Campaign, batch: list[tuple[str, tuple[str, ...]]], now: float) -> int:
        """Render and hand a batch of notices to the outbound stream: four round trips for the batch (five
        with per-member values)."""
        numbers = [n for n, _ in batch]
        rows = await self.store.read_many(numbers)
        opted = await self.opted_out_among(campaign, [r for r in rows if r])
        deadlines = await self.redis.hmget(key(campaign.id, "deadline"), numbers)
        owns = await self.own_values(campaign, numbers)
        renderer = self.renderer(campaign)
        outbox: list[Message] = []
        records: dict[str, str] = {}
        postal: dict[str, float] = {}
        watch: dict[str, float] = {}
        for (number, tried), member, raw_deadline, own in zip(batch, rows, deadlines, owns, strict=True):
            deadline = float(raw_deadline or now)
            variables = self.variables(campaign, member, own)
            tried_now = list(tried)
            msg: Message | None = None
            for channel in campaign.channels:
                urn = address(member, channel)
                if channel in tried_now or channel not in self.enabled or not urn or urn in opted.get(channel, set()):
                    continue
                try:
                    notice = renderer.render(channel, member, context(campaign, member), variables)
                except RenderError as exc:
                    log.error("notice not rendered", extra={"campaign": campaign.id, "channel": channel,
                                                            "error": str(exc)[:200]})  # fmt: skip
                    tried_now.append(channel)
                    continue
                meta: dict[str, Any] = {"campaign": campaign.id, "member": number}
                if channel == "email":
                    meta.update(thread={"subject": notice.subject}, auto_generated=True)  # HTML added when sent
                    if not campaign.mandatory:
                        meta["list_unsubscribe"] = True
                msg = Message(
                    id=f"c.{campaign.id}.{number}.{len(tried_now)}",
                    channel=channel,
                    urn=urn,
                    direction="out",
                    text=notice.text,
                    meta=meta,
                    conversation_id=f"c.{campaign.id}.{number}",
                )
                break
            if msg is None:
                postal[number] = deadline
                records[number] = orjson.dumps({"channel": "", "tried": tried_now, "postal_ms": int(now * 1000),
                                                "deadline": int(deadline)}).decode()  # fmt: skip
                continue
            outbox.append(msg)
            records[number] = orjson.dumps({"channel": msg.channel, "msg": msg.id, "conv": msg.conversation_id,
                                            "tried": tried_now, "queued_ms": int(now * 1000),
                                            "deadline": int(deadline)}).decode()  # fmt: skip
            wait = DELIVERY_WAIT_S.get(msg.channel, 60)
            watch[number] = min(now + wait, max(now + 30, deadline - 24 * 3600))  # fall back a day before at worst
        if outbox:
            assert self.enqueue_many is not None, "sending needs the gateway's outbound stream"
            await self.enqueue_many(outbox)
        async with self.redis.pipeline(transaction=False) as pipe:
            if records:
                pipe.hset(key(campaign.id, "r"), mapping=records)
            if postal:
                pipe.zadd(key(campaign.id, "postal"), postal)
            if watch:
                pipe.zadd(key(campaign.id, "watch"), watch)
            pipe.zrem(key(campaign.id, "inflight"), *numbers)
            await pipe.execute()
        for number in postal:  # no digital channel reaches them: the back office sends it by post
            await events.emit(self.redis, events.NOTICE_POSTAL, f"{campaign.id} {number}", {
                "campaign": campaign.id, "member": number, "tried": json.loads(records[number]).get("tried", [])})  # fmt: skip
        return len(outbox)

    async def _watch(self, campaign: Campaign, now: float) -> None:
        """Fall back to the next channel when a notice failed or was not delivered in time."""
        due = await self.redis.zrangebyscore(key(campaign.id, "watch"), "-inf", now, start=0, num=BATCH)
        if not due:
            return
        for number in due:
            raw = await self.redis.hget(key(campaign.id, "r"), number)
            if not raw:
                await self.redis.zrem(key(campaign.id, "watch"), number)
                continue
            record = json.loads(raw)
            status = await self.redis.hget(keys.message(record["conv"], record["msg"]), "status") or "queued"
            if record["channel"] == "email" and status == "sent":  # no bounce yet: wait out the bounce window
                settled = min(record.get("queued_ms", 0) / 1000 + BOUNCE_WAIT_S, record["deadline"] - 24 * 3600)
                if now < settled:
                    await self.redis.zadd(key(campaign.id, "watch"), {number: settled})
                    continue
            done = status in DELIVERED or (record["channel"] == "email" and status == "sent")
            if done:
                await self.redis.zrem(key(campaign.id, "watch"), number)
            elif status in FAILED or status in ("sent", "unknown"):  # failed, or not delivered in time
                await self.redis.zrem(key(campaign.id, "watch"), number)
                await self.redis.hincrby(key(campaign.id), "fallbacks", 1)
                await self._notify(campaign, number, now, (*record["tried"], record["channel"]))
            else:  # still in the dispatcher's hands (throttled, retrying): look again soon
                await self.redis.zadd(key(campaign.id, "watch"), {number: now + 60})

    async def recheck(self, msg_id: str) -> bool:
        """A notice reported failed (a provider's callback, a bounce): the watchdog looks at its member
        on its next round instead of at the planned time. Other messages are not campaign notices."""
        parts = msg_id.split(".")
        if len(parts) != 4 or parts[0] != "c":
            return False
        _, cid, number, _ = parts
        return bool(await self.redis.zadd(key(cid, "watch"), {number: 0}, xx=True, ch=True))

    async def _maybe_done(self, campaign: Campaign) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for part in ("due", "inflight", "watch"):
                pipe.zcard(key(campaign.id, part))
            sizes = await pipe.execute()
        if not any(sizes):
            await self.set_state(campaign, "done", done_ms=str(int(now_s() * 1000)))

    # Reporting -------------------------------------------------------------------------------------------
    async def recipients(self, campaign: Campaign) -> AsyncIterator[dict[str, Any]]:
        """Every planned member with where their notice stands (the proof of notice)."""
        rkey = key(campaign.id, "r")
        cursor = 0
        seen: set[str] = set()
        while True:
            cursor, batch = await self.redis.hscan(rkey, cursor, count=1000)
            members = list(batch.items())
            async with self.redis.pipeline(transaction=False) as pipe:
                for _, raw in members:
                    rec = json.loads(raw)
                    pipe.hgetall(keys.message(rec["conv"], rec["msg"]) if rec.get("msg") else "camp:none")
                statuses = await pipe.execute()
            for (number, raw), msg in zip(members, statuses, strict=True):
                rec = json.loads(raw)
                seen.add(number)
                yield {
                    "member": number,
                    "channel": rec.get("channel") or "courrier",
                    "tried": ",".join(rec.get("tried") or []),
                    "status": msg.get("status", "postal" if not rec.get("msg") else "queued"),
                    "queued_at": _iso(rec.get("queued_ms")),
                    "sent_at": _iso(msg.get("sent_ms")),
                    "delivered_at": _iso(msg.get("delivered_ms")),
                    "deadline": dt.datetime.fromtimestamp(int(rec.get("deadline", 0)), PARIS).date().isoformat(),
                    "on_time": _on_time(msg.get("sent_ms"), rec.get("deadline")),
                }
            if cursor == 0:
                break
        for number, planned in await self.redis.zrange(key(campaign.id, "due"), 0, -1, withscores=True):
            if number not in seen:
                yield {"member": number, "channel": "", "tried": "", "status": "planned",
                       "queued_at": "", "sent_at": "", "delivered_at": "",
                       "deadline": "", "on_time": "", "planned_at": _iso(planned * 1000)}  # fmt: skip

    async def report(self, campaign: Campaign) -> dict[str, Any]:
        counts: Counter[str] = Counter()
        by_channel: Counter[str] = Counter()
        late = 0
        async for row in self.recipients(campaign):
            counts[row["status"]] += 1
            by_channel[row["channel"] or "prévu"] += 1
            if row["on_time"] == "non":
                late += 1
        info = await self.redis.hgetall(key(campaign.id))
        planned = int(info.get("planned") or 0)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(key(campaign.id, "due"))
            pipe.zcard(key(campaign.id, "inflight"))
            pipe.zrange(key(campaign.id, "watch"), -1, -1, withscores=True)
            due, inflight, last_watch = await pipe.execute()
        notified = sum(n for s, n in counts.items() if s in ("sent", "delivered", "read"))
        return {
            "campaign": campaign.public(),
            "planned": planned,
            "by_status": dict(counts),
            "by_channel": dict(by_channel),
            "notified": notified,
            "progress": round(notified / planned, 4) if planned else 0.0,
            "fallbacks": int(info.get("fallbacks") or 0),
            "postal": int(await self.redis.zcard(key(campaign.id, "postal"))),
            "late": late,
            "state": campaign.state,
            "start_at": info.get("start_at", ""),
            "remaining": int(due) + int(inflight),  # notices not handed to a provider yet
            # Every notice gone, the campaign still waits for bounces and delivery reports until then:
            "waiting_until": _iso(last_watch[0][1] * 1000) if last_watch and last_watch[0][1] > 0 else "",
            "waiting_label": _until(last_watch[0][1]) if last_watch and last_watch[0][1] > 0 else "",
        }

    async def postal(self, campaign: Campaign) -> list[dict[str, Any]]:
        """Members no digital channel reached, the nearest deadline first (for postal mail)."""
        out = []
        for number, deadline in await self.redis.zrange(key(campaign.id, "postal"), 0, -1, withscores=True):
            member = await self.redis.hgetall(keys.member(number))
            out.append({"member": number, "name": f"{member.get('first_name', '')} {member.get('last_name', '')}".strip(),
                        "deadline": dt.datetime.fromtimestamp(deadline, PARIS).date().isoformat()})  # fmt: skip
        return out


def _last_open_at_or_before(window: Any, moment: dt.datetime) -> dt.datetime:
    day = moment.date()
    for _ in range(400):
        if window.open_on(day):
            return dt.datetime.combine(day, window.start, PARIS)
        day -= dt.timedelta(days=1)
    return moment


def _until(seconds: float) -> str:
    """« jusqu'à 14 h 50 » today, « jusqu'au 16 janvier 2027 à 14 h 50 » another day (Paris time)."""
    moment = dt.datetime.fromtimestamp(seconds, PARIS)
    if moment.date() == dt.datetime.now(PARIS).date():
        return f"jusqu'à {hour(moment.time())}"
    return f"jusqu'au {long_datetime(moment.isoformat())}"


def _iso(ms: Any) -> str:
    try:
        return dt.datetime.fromtimestamp(int(float(ms)) / 1000, PARIS).isoformat(timespec="seconds") if ms else ""
    except (TypeError, ValueError):
        return ""


def _on_time(sent_ms: Any, deadline: Any) -> str:
    if not sent_ms or not deadline:
        return ""
    return "oui" if int(sent_ms) / 1000 <= int(deadline) else "non"


async def _each(batches: AsyncIterator[list[dict[str, str]]]) -> AsyncIterator[dict[str, str]]:
    async for batch in batches:
        for item in batch:
            yield item


async def _chunks(items: list[str], size: int = 1000) -> AsyncIterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


async def _scan(redis: Redis, set_key: str, size: int = 1000) -> AsyncIterator[list[str]]:
    cursor = 0
    while True:
        cursor, batch = await redis.sscan(set_key, cursor, count=size)
        if batch:
            yield sorted(batch)
        if cursor == 0:
            return
