"""« Pourquoi ma cotisation augmente ? » answered from the records: the campaigns' record of the advance
notice sent to this member (through the real campaign engine), read as the bot reads it."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict

from redis.asyncio import Redis

from bot.actions import answers, notices
from campaigns.engine import Campaigns
from campaigns.model import from_input
from campaigns.rules import PARIS
from gateway import keys
from gateway.contacts import Contacts
from gateway.conversations import Conversations
from gateway.envelope import Message
from gateway.responders import AckResponder
from gateway.router import Router
from gateway.streams import Streams
from members.records import Member, MemberStore

TUESDAY_10AM = dt.datetime(2026, 11, 24, 10, 0, tzinfo=PARIS)
CAMILLE = Member("M0000007", "Camille", "Durand", "1985-03-03", "+33199000007", "camille@example.fr", "confort",
                 "Bretagne", "famille", "64.20", "2026-12-05")  # fmt: skip


async def send_notice(redis: Redis, **over: object) -> str:
    """A contribution-change campaign sent to Camille by the engine, her notice sent on 24 November."""
    store = MemberStore(redis)
    async with redis.pipeline(transaction=False) as pipe:
        store.write(pipe, CAMILLE)
        await pipe.execute()
    streams = Streams(redis, shards=1, maxlen=1000, dedup_ttl_s=3600)
    router = Router(redis, streams, AckResponder(), Contacts(redis), Conversations(redis))
    engine = Campaigns(redis, enqueue=router.enqueue_many, rates={"email": 100.0, "sms": 100.0})
    campaign = from_input({"kind": "contribution_change", "title": "Évolution de votre cotisation",
                           "effective_date": "2027-01-01", "channels": ["email", "sms"],
                           "values": {"new_contribution": "71.20"}, **over})  # fmt: skip
    await engine.save(campaign)
    await engine.schedule(campaign, TUESDAY_10AM, now=TUESDAY_10AM)
    await engine.tick(TUESDAY_10AM.timestamp())
    [(_, fields)] = await redis.xrange(keys.stream("bulk", 0))
    msg = Message.from_json(fields["m"])
    await Conversations(redis).set_status(str(msg.conversation_id), msg.id, "sent")
    await redis.hset(keys.message(str(msg.conversation_id), msg.id), "sent_ms", int(TUESDAY_10AM.timestamp() * 1000))
    return campaign.id


async def test_the_why_answer_holds_the_notice_dates_and_this_members_figures(redis: Redis) -> None:
    cid = await send_notice(redis)
    notice = await notices.contribution_notice(redis, asdict(CAMILLE))
    assert notice == {"sent": "2026-11-24", "channel": "par e-mail", "effective": "2027-01-01", "new": "71.20",
                      "campaign": cid}  # fmt: skip
    today = dt.date(2026, 12, 7)
    text = answers.contribution_answer(asdict(CAMILLE), why=True, today=today, notice=notice)
    assert text.startswith("Votre cotisation mensuelle est de 64,20 €, prochain appel le 5 décembre 2026.")
    assert (
        "Elle passera à 71,20 € (+7,00 €, soit +10,9 %) le 1er janvier 2027 : nous vous l'avons annoncé "
        "le 24 novembre 2026 par e-mail." in text
    )
    assert "votre tranche d'âge (41–55 ans ; vous y êtes entré(e) cette année" in text
    assert "votre formule « confort »" in text
    assert "l'évolution annuelle de nos tarifs au 1er janvier 2027, votée par notre assemblée générale." in text
    assert text.count("24 novembre 2026") == 1
    brief = answers.contribution_answer(asdict(CAMILLE), why=True, today=today, notice=notice, short=True)
    assert "le 01/01/2027 : nous vous l'avons annoncé le 24/11/2026 par e-mail." in brief
    # The plain question also says what is coming; once it applies, only the why answer tells it.
    plain = answers.contribution_answer(asdict(CAMILLE), today=today, notice=notice)
    assert "Elle passera à 71,20 €" in plain and plain.endswith("Formule : confort.")
    later = answers.contribution_answer(asdict(CAMILLE), today=dt.date(2027, 1, 10), notice=notice)
    assert "71,20" not in later
    after = answers.contribution_answer(asdict(CAMILLE), why=True, today=dt.date(2027, 1, 10), notice=notice)
    assert "Elle est passée à 71,20 € le 1er janvier 2027 : nous vous l'avions annoncé le 24 novembre 2026" in after


async def test_no_notice_for_another_member_or_another_kind(redis: Redis) -> None:
    await send_notice(redis, kind="benefit_change", title="Vos garanties", values={"change_summary": "optique"})
    assert await notices.contribution_notice(redis, asdict(CAMILLE)) is None
    assert await notices.contribution_notice(redis, {**asdict(CAMILLE), "number": "M0000008"}) is None
    without = answers.contribution_answer(asdict(CAMILLE), why=True, today=dt.date(2026, 12, 7))
    assert "l'évolution annuelle de nos tarifs au 1er janvier, votée" in without and "annoncé" not in without
