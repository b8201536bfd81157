"""Planning and sending on a real Redis, through the gateway's real router and outbound stream:
one notice per member even when a process dies mid-batch, opt-outs and failures fall back to the
next channel, members nobody reaches are listed for postal mail, late schedules are refused."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from redis.asyncio import Redis

from campaigns.engine import BOUNCE_WAIT_S, RECLAIM_S, Campaigns
from campaigns.model import CampaignError, from_input, key
from campaigns.rules import PARIS
from gateway import keys
from gateway.contacts import Contacts
from gateway.conversations import Conversations
from gateway.envelope import Message
from gateway.responders import AckResponder
from gateway.router import Router
from gateway.streams import Streams
from members.records import Member, MemberStore

TUESDAY_10AM = dt.datetime(2027, 1, 5, 10, 0, tzinfo=PARIS)


def member(i: int, *, phone: bool = True, email: bool = True, call: str = "2027-03-10") -> Member:
    return Member(f"M{i:07d}", "Camille", f"Durand{i}", "1975-03-12", f"+3319900{i:04d}" if phone else "",
                  f"m{i}@example.fr" if email else "", "confort", "Bretagne", "famille", "64.20", call)  # fmt: skip


@pytest.fixture
async def engine(redis: Redis) -> Campaigns:
    streams = Streams(redis, shards=1, maxlen=100_000, dedup_ttl_s=3600)
    router = Router(redis, streams, AckResponder(), Contacts(redis), Conversations(redis))
    return Campaigns(redis, enqueue=router.enqueue_many, rates={"email": 100.0, "sms": 100.0})


async def load(redis: Redis, members: list[Member]) -> None:
    store = MemberStore(redis)
    async with redis.pipeline(transaction=False) as pipe:
        for m in members:
            store.write(pipe, m)
        await pipe.execute()


async def notices(redis: Redis) -> list[Message]:
    return [Message.from_json(f["m"]) for _, f in await redis.xrange(keys.stream("bulk", 0))]


def campaign_input(**over: object) -> dict[str, object]:
    return {"kind": "contribution_change", "title": "Évolution de votre cotisation", "effective_date": "2027-03-01",
            "channels": ["sms", "email"], "values": {"new_contribution": "67.10", "change_percent": "4.5"}, **over}  # fmt: skip


async def test_each_member_notified_once_even_after_a_crash_mid_batch(engine: Campaigns, redis: Redis) -> None:
    await load(redis, [member(i) for i in range(1, 121)])
    campaign = from_input(campaign_input())
    await engine.save(campaign)
    plan = await engine.schedule(campaign, TUESDAY_10AM, now=TUESDAY_10AM)
    assert plan["planned"] == 120 and plan["by_channel"] == {"sms": 120}
    now = TUESDAY_10AM.timestamp()
    # A worker claims a batch and dies before sending it (kill -9): the members wait in flight...
    claimed = await engine._claim(keys=[key(campaign.id, "due"), key(campaign.id, "inflight")], args=[now, 50])
    assert len(claimed) == 50
    # ...another worker sends the rest, then takes the abandoned batch back once it is old enough.
    await engine.tick(now + 1)
    await engine.tick(now + 2)
    assert len(await notices(redis)) == 70
    await engine.tick(now + RECLAIM_S + 5)
    sent = await notices(redis)
    assert len(sent) == 120 and len({m.urn for m in sent}) == 120
    # Replaying the same sends (as after a crash between enqueue and bookkeeping) adds nothing.
    assert engine.enqueue_many is not None
    assert await engine.enqueue_many(sent[:10]) == 0
    assert len(await notices(redis)) == 120
    first = sent[0]
    assert first.channel == "sms" and "dès le 1er mars 2027" in first.text
    assert (await redis.hgetall(key(campaign.id)))["state"] == "sending"


async def test_opt_out_failure_and_nobody_fall_back(engine: Campaigns, redis: Redis) -> None:
    await load(redis, [member(1), member(2), member(3, phone=False, email=False)])
    await redis.sadd(keys.opt_out("sms"), "tel:+33199000001")  # member 1 said STOP
    campaign = from_input(campaign_input())
    await engine.save(campaign)
    await engine.schedule(campaign, TUESDAY_10AM, now=TUESDAY_10AM)
    now = TUESDAY_10AM.timestamp()
    await engine.tick(now)
    by_member = {m.id.split(".")[2]: m for m in await notices(redis)}
    assert by_member["M0000001"].channel == "email" and by_member["M0000002"].channel == "sms"
    assert [p["member"] for p in await engine.postal(campaign)] == ["M0000003"]
    # Member 2's SMS fails at the provider: the watchdog sends the e-mail.
    sms = by_member["M0000002"]
    await redis.hset(keys.message(str(sms.conversation_id), sms.id), "sending_ms", 1)  # the dispatcher's record
    await Conversations(redis).set_status(str(sms.conversation_id), sms.id, "failed", error_code="30003")
    await engine.tick(now + 4 * 3600 + 1)
    retried = [m for m in await notices(redis) if m.id == "c." + campaign.id + ".M0000002.1"]
    assert len(retried) == 1 and retried[0].channel == "email"
    assert retried[0].meta["thread"]["subject"] == "Évolution de votre cotisation au 1er mars 2027"
    assert "list_unsubscribe" not in retried[0].meta  # a mandatory notice
    rows = {r["member"]: r async for r in engine.recipients(campaign)}
    assert rows["M0000002"]["tried"] == "sms" and rows["M0000003"]["channel"] == "courrier"
    report = await engine.report(campaign)
    assert (report["planned"], report["fallbacks"], report["postal"]) == (3, 1, 1)


async def test_opt_outs_made_after_planning_are_honoured_when_sending(engine: Campaigns, redis: Redis) -> None:
    """Each batch asks Redis about its own members' addresses (not whole opt-out sets): a STOP or an
    unsubscribe that arrives between planning and sending still decides the channel."""
    await load(redis, [member(i) for i in range(1, 5)])
    await redis.sadd(keys.opt_out("sms"), *(f"tel:+3319999{i:04d}" for i in range(2000)))  # other people
    campaign = from_input(
        campaign_input(
            kind="information",
            title="Nouveau service",
            channels=["email", "sms"],
            values={"message": "Un nouveau service en ligne."},
        )
    )
    assert not campaign.mandatory
    await engine.save(campaign)
    await engine.schedule(campaign, TUESDAY_10AM, now=TUESDAY_10AM)
    await redis.sadd(keys.info_opt_out("email"), "mailto:m1@example.fr")  # member 1 unsubscribed from information
    await redis.sadd(keys.opt_out("email"), "mailto:m2@example.fr")  # member 2 refused every e-mail
    await redis.sadd(keys.opt_out("sms"), "tel:+33199000002", "tel:+33199000003")  # 2 and 3 said STOP
    await engine.tick(TUESDAY_10AM.timestamp())
    by_member = {m.id.split(".")[2]: m.channel for m in await notices(redis)}
    assert by_member == {"M0000001": "sms", "M0000003": "email", "M0000004": "email"}
    assert [p["member"] for p in await engine.postal(campaign)] == ["M0000002"]


async def test_a_late_schedule_is_refused_with_the_latest_date(engine: Campaigns, redis: Redis) -> None:
    await load(redis, [member(i) for i in range(1, 11)])
    campaign = from_input(campaign_input(effective_date="2027-03-31"))
    await engine.save(campaign)
    with pytest.raises(CampaignError) as late:
        await engine.schedule(campaign, dt.datetime(2027, 3, 1, 10, tzinfo=PARIS), now=TUESDAY_10AM)
    assert "28 février 2027" in late.value.errors["start_at"]
    slow = Campaigns(redis, enqueue=engine.enqueue_many, rates={"sms": 0.0001, "email": 0.0001})
    with pytest.raises(CampaignError) as too_slow:
        await slow.schedule(campaign, dt.datetime(2027, 2, 26, 10, tzinfo=PARIS), now=TUESDAY_10AM)
    assert "après la dernière date d'envoi possible, le 28 février 2027" in too_slow.value.errors["start_at"]
    assert (await engine.get(campaign.id)).state == "draft"  # type: ignore[union-attr]


async def test_per_member_dates_each_a_month_before_their_own(engine: Campaigns, redis: Redis) -> None:
    await load(redis, [member(1, call="2027-03-10"), member(2, call="2027-04-15")])
    campaign = from_input(campaign_input(effective_date="", date_field="contribution_call_date", lead_days=2))
    await engine.save(campaign)
    await engine.schedule(campaign, TUESDAY_10AM, now=TUESDAY_10AM)
    planned = dict(await redis.zrange(key(campaign.id, "due"), 0, -1, withscores=True))
    # Deadlines 10 Feb and 15 Mar; two days before, at the window's opening (13 Mar is a Saturday, not a
    # working day: the default window is Monday to Friday, so the Friday before).
    assert dt.datetime.fromtimestamp(planned["M0000001"], PARIS) == dt.datetime(2027, 2, 8, 9, 0, tzinfo=PARIS)
    assert dt.datetime.fromtimestamp(planned["M0000002"], PARIS) == dt.datetime(2027, 3, 12, 9, 0, tzinfo=PARIS)
    assert await engine.tick(TUESDAY_10AM.timestamp()) == 0  # nobody is due yet
    sent_day = dt.datetime(2027, 2, 8, 9, 30, tzinfo=PARIS).timestamp()
    assert await engine.tick(sent_day) == 1
    [notice] = await notices(redis)
    assert "dès le 10 mars 2027" in notice.text  # the member's own date
    # A member whose date is too close cannot be told a month ahead: the schedule is refused.
    await load(redis, [member(3, call="2027-01-20")])
    again = from_input(campaign_input(effective_date="", date_field="contribution_call_date"))
    await engine.save(again)
    with pytest.raises(CampaignError) as late:
        await engine.schedule(again, TUESDAY_10AM, now=TUESDAY_10AM)
    assert "20 décembre 2026" in late.value.errors["start_at"]


async def test_paused_campaigns_send_nothing_until_resumed(engine: Campaigns, redis: Redis) -> None:
    await load(redis, [member(i) for i in range(1, 6)])
    campaign = from_input(campaign_input())
    await engine.save(campaign)
    await engine.schedule(campaign, TUESDAY_10AM, now=TUESDAY_10AM)
    await engine.pause(campaign)
    assert await engine.tick(TUESDAY_10AM.timestamp()) == 0
    await engine.resume(campaign)
    assert await engine.tick(TUESDAY_10AM.timestamp()) == 5
    sunday = dt.datetime(2027, 1, 10, 11, 0, tzinfo=PARIS).timestamp()
    again = from_input(campaign_input())
    await engine.save(again)
    await engine.schedule(again, TUESDAY_10AM, now=TUESDAY_10AM)
    assert await engine.tick(sunday) == 0  # never on a Sunday
    record = json.loads(await redis.hget(key(campaign.id, "r"), "M0000001"))
    assert record["channel"] == "sms" and record["deadline"] > 0


async def test_an_email_is_done_only_once_its_bounce_window_passed(engine: Campaigns, redis: Redis) -> None:
    await load(redis, [member(1, phone=True)])
    campaign = from_input(campaign_input(channels=["email", "sms"]))
    await engine.save(campaign)
    await engine.schedule(campaign, TUESDAY_10AM, now=TUESDAY_10AM)
    now = TUESDAY_10AM.timestamp()
    await engine.tick(now)
    (mail,) = await notices(redis)
    mkey = keys.message(str(mail.conversation_id), mail.id)
    await redis.hset(mkey, "sending_ms", 1)  # the dispatcher's record, then the relay took it
    await Conversations(redis).set_status(str(mail.conversation_id), mail.id, "sent")
    await engine.tick(now + 31)  # accepted by the relay, but a bounce may still come
    assert await redis.zscore(key(campaign.id, "watch"), "M0000001") == now + BOUNCE_WAIT_S
    # A bounce an hour later: reported failed, the watchdog comes back at once and sends the SMS.
    await Conversations(redis).set_status(str(mail.conversation_id), mail.id, "failed", error_code="5.1.1")
    assert await engine.recheck(mail.id) and not await engine.recheck("c.other.M0000009.0")
    await engine.tick(now + 3600)
    assert [m.channel for m in await notices(redis)] == ["email", "sms"]
    # Another member's e-mail with no bounce is done after the window, with no fallback.
    await load(redis, [member(2, phone=True)])
    other = from_input(campaign_input(channels=["email", "sms"], audience={"members": ["M0000002"]}))
    await engine.save(other)
    await engine.schedule(other, TUESDAY_10AM, now=TUESDAY_10AM)
    await engine.tick(now)
    mail2 = next(m for m in await notices(redis) if m.id.startswith(f"c.{other.id}."))
    await redis.hset(keys.message(str(mail2.conversation_id), mail2.id), "sending_ms", 1)
    await Conversations(redis).set_status(str(mail2.conversation_id), mail2.id, "sent")
    await engine.tick(now + 31)
    await engine.tick(now + BOUNCE_WAIT_S + 1)
    assert not await redis.zcard(key(other.id, "watch"))
    assert [m.channel for m in await notices(redis) if m.id.startswith(f"c.{other.id}.")] == ["email"]
