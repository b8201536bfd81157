"""Calls at the agents' desk on a real Redis: a request for a human outside opening hours becomes a
callback for the next open slot, confirmed by SMS; the day's call figures and their rates."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from redis.asyncio import Redis

from agents.calls import CallDesk, call_figures, current_or_next_slot, next_slot, offer_word
from agents.desk import Desk, DeskError
from bot.actions import state as bot_state
from gateway import keys
from gateway.contacts import Contacts
from gateway.conversations import Conversations, paris_day
from gateway.envelope import Message, inbound
from gateway.hours import PARIS, OpeningHours
from gateway.responders import AckResponder
from gateway.router import Router
from gateway.streams import Streams
from staff.users import Users
from tests.e2e.bot_data import CAMILLE, seed

HOURS = OpeningHours.parse("mon-fri 09:00-12:00,14:00-18:00")


def test_next_slot_skips_closed_days_and_public_holidays() -> None:
    friday_evening = dt.datetime(2026, 12, 4, 19, 0, tzinfo=PARIS)
    assert next_slot(HOURS, friday_evening) == (dt.date(2026, 12, 7), HOURS.days[0][0])  # Monday 9 h
    christmas_eve = dt.datetime(2026, 12, 24, 18, 30, tzinfo=PARIS)
    assert next_slot(HOURS, christmas_eve) == (dt.date(2026, 12, 28), HOURS.days[0][0])  # not Friday 25th
    monday_lunch = dt.datetime(2026, 12, 7, 12, 30, tzinfo=PARIS)
    assert next_slot(HOURS, monday_lunch) == (dt.date(2026, 12, 7), HOURS.days[0][1])  # 14 h the same day


async def test_a_call_for_a_human_outside_hours_becomes_a_callback_confirmed_by_sms(redis: Redis) -> None:
    streams = Streams(redis, shards=1, maxlen=10_000, dedup_ttl_s=60)
    router = Router(redis, streams, AckResponder(), Contacts(redis), Conversations(redis))
    desk = Desk(redis, router, sms_enabled=True, hours=HOURS)
    calls = CallDesk(redis, desk, public_url="https://gw.example", hours=HOURS, sms=True)
    msg = inbound("voice", "tel:+33612345678", "je veux parler à un conseiller", f"CA{time.time_ns()}:1")
    await router.handle(msg)
    contact = await redis.get(keys.address("tel:+33612345678"))
    conv = str(await redis.get(keys.open_conversation(contact, "voice")))
    await bot_state.handoff(redis, conv, reason="ask_human", intent="", member=None, summary="Demandes : x.")

    said = await calls.after_hours(conv, "CA" + "1" * 32)
    again = await calls.after_hours(conv, "CA" + "1" * 32)  # the webhook sent again: one request, one SMS

    day, slot = next_slot(HOURS, dt.datetime.now(PARIS)) or (None, None)
    assert day is not None and slot is not None
    assert said.startswith("Nos conseillers sont absents pour le moment. Un conseiller vous rappellera ")
    assert f"entre {slot.start.hour} h" in said and "SMS de confirmation" in said and again == said
    cb_id = await redis.hget(keys.conversation(conv), "callback_id")
    cb = await redis.hgetall(keys.callback(cb_id))
    assert cb["phone"] == "+33612345678" and cb["status"] == "pending"
    assert cb["slot_start"] == dt.datetime.combine(day, slot.start, PARIS).isoformat()
    assert await redis.zscore(keys.CALLBACKS_DUE, cb_id) == dt.datetime.combine(day, slot.start, PARIS).timestamp()
    assert await redis.zscore(keys.HANDOFF_QUEUE, conv) is None  # not left waiting for an agent tonight
    sms = [Message.from_json(f["m"]) for _, f in await redis.xrange(keys.stream("out", 0))]
    confirmations = [m for m in sms if m.channel == "sms" and cb["ref"] in m.text]
    assert len(confirmations) == 1 and confirmations[0].urn == "tel:+33612345678"
    assert f"{day:%d/%m}" in confirmations[0].text


def test_call_figures_rates_and_averages() -> None:
    counters = {"calls_offered": 10, "calls_answered": 9, "calls_answered_60": 8, "calls_abandoned": 1,
                "calls_wait_s": 270, "calls_talk_s": 1800, "calls_talked": 9, "calls_offered:benefits": 4,
                "calls_answered:benefits": 2}  # fmt: skip
    assert call_figures(counters) == {"offered": 10, "answered": 9, "abandoned": 1, "answered_60": 8,
                                      "answer_rate": 0.9, "answered_60_rate": 0.8, "avg_wait_s": 30,
                                      "avg_talk_s": 200}  # fmt: skip
    assert call_figures(counters, "benefits")["answer_rate"] == 0.5
    assert call_figures({}, "quotes")["answer_rate"] is None


async def test_closing_a_call_sends_no_written_survey(redis: Redis) -> None:
    from staff.users import User

    streams = Streams(redis, shards=1, maxlen=10_000, dedup_ttl_s=60)
    router = Router(redis, streams, AckResponder(), Contacts(redis), Conversations(redis))
    desk = Desk(redis, router, sms_enabled=True)
    await router.handle(inbound("voice", "tel:+33612345679", "conseiller", f"CA{time.time_ns()}:1"))
    contact = await redis.get(keys.address("tel:+33612345679"))
    conv = str(await redis.get(keys.open_conversation(contact, "voice")))
    await bot_state.handoff(redis, conv, reason="ask_human", intent="", member=None, summary="Demandes : x.")
    julie = User("julie", "Julie", "agent", ("benefits",), 2, phone="+33612000001")
    await desk.take(julie, conv)
    with pytest.raises(DeskError, match="appel téléphonique"):  # nothing written would reach a caller
        await desk.reply(julie, conv, "Bonjour", "client-id-0001")
    await desk.close(julie, conv)
    assert (await redis.hgetall(keys.conversation(conv)))["status"] == "closed"
    assert await redis.get(keys.survey_pending(contact)) is None
    sent = [Message.from_json(f["m"]) for _, f in await redis.xrange(keys.stream("out", 0))]
    assert not any("satisfait" in m.text or "je suis Julie" in m.text for m in sent)


async def test_a_callback_the_member_answers_is_done_without_a_click(redis: Redis) -> None:
    streams = Streams(redis, shards=1, maxlen=10_000, dedup_ttl_s=60)
    router = Router(redis, streams, AckResponder(), Contacts(redis), Conversations(redis))
    desk = Desk(redis, router, sms_enabled=True)
    calls = CallDesk(redis, desk, public_url="https://gw.example", hours=HOURS, sms=True)
    await Users(redis).create("julie", "un-mot-de-passe-long", first_name="Julie", role="agent", skills=["benefits"],
                              phone="+33612000001")  # fmt: skip
    start = dt.datetime.now(PARIS).replace(microsecond=0)
    await redis.hset(keys.callback("cb1"), mapping={"id": "cb1", "phone": "+33612345678", "status": "pending",
                                                    "slot_start": start.isoformat(), "slot_end": start.isoformat(),
                                                    "reason": "remboursement"})  # fmt: skip
    await redis.zadd(keys.CALLBACKS_DUE, {"cb1": start.timestamp()})
    julie = await Users(redis).get("julie")
    assert julie is not None and julie.phone == "+33612000001"
    await desk.callbacks.take(julie, "cb1")
    leg = {"kind": "callback", "callback": "cb1", "agent": "julie", "dialed": "1"}
    await calls.leg_status(leg, "completed")
    cb = await redis.hgetall(keys.callback("cb1"))
    assert cb["status"] == "done" and cb["done_by"] == "julie" and cb["last_call_status"] == "completed"
    assert await redis.zscore(keys.CALLBACKS_DUE, "cb1") is None


ALWAYS = OpeningHours.parse("mon-sun 00:00-24:00")


def test_rappel_is_recognised_whatever_the_case_accents_or_punctuation() -> None:
    assert all(offer_word(t) for t in ("RAPPEL", "rappel", " Rappel ! ", "rappelez-moi", "Rappelez moi."))
    assert not any(offer_word(t) for t in ("", "rappel demain", "pas de rappel", "STOP", "1"))


def test_the_slot_in_progress_is_offered_while_15_minutes_are_left() -> None:
    hours = OpeningHours.parse("mon-fri 09:00-12:00,14:00-18:00")
    assert current_or_next_slot(hours, dt.datetime(2026, 12, 7, 10, 0, tzinfo=PARIS)) == (
        dt.date(2026, 12, 7), hours.days[0][0])  # fmt: skip
    assert current_or_next_slot(hours, dt.datetime(2026, 12, 7, 11, 50, tzinfo=PARIS)) == (
        dt.date(2026, 12, 7), hours.days[0][1])  # fmt: skip


async def test_an_abandoned_verified_caller_is_counted_once_and_offered_a_callback_booked_by_rappel(
    redis: Redis,
) -> None:
    await seed(redis)
    streams = Streams(redis, shards=1, maxlen=10_000, dedup_ttl_s=60)
    router = Router(redis, streams, AckResponder(), Contacts(redis), Conversations(redis))
    desk = Desk(redis, router, sms_enabled=True, hours=ALWAYS)
    calls = CallDesk(redis, desk, public_url="https://gw.example", hours=ALWAYS, sms=True)
    router.detours.append(calls)  # as server/product.py wires it when the voice channel is on
    urn = f"tel:{CAMILLE.phone}"

    async def waiting_call(sid: str, *, verified: bool) -> str:
        await router.handle(inbound("voice", urn, "je veux parler à un conseiller", f"{sid}:1"))
        contact = await redis.get(keys.address(urn))
        conv = str(await redis.get(keys.open_conversation(contact, "voice")))
        if verified:
            await redis.hset(keys.conversation(conv), "verified_member", CAMILLE.number)
        await bot_state.handoff(redis, conv, reason="ask_human", intent="", member=None, summary="Demandes : x.")
        await calls.enqueued(conv, sid)
        return conv

    def out() -> list[Message]:
        return [Message.from_json(f["m"]) for _, f in redis_out]

    def abandoned(day: dict[str, str]) -> int:
        return int(day.get("calls_abandoned", 0))

    # Not verified (her number, attested or not, is only an address): counted, but nothing sent, nothing offered.
    unverified_sid = "CA" + "a" * 32
    conv = await waiting_call(unverified_sid, verified=False)
    await calls.left_queue(conv, unverified_sid, "hangup", 40)
    redis_out = await redis.xrange(keys.stream("out", 0))
    assert not [m for m in out() if m.channel == "sms"]
    assert not await redis.exists(keys.callback_offer(urn))
    assert abandoned(await redis.hgetall(keys.day_stats(paris_day()))) == 1
    contact = await redis.get(keys.address(urn))
    await redis.delete(keys.open_conversation(contact, "voice"))  # the call ended: her next call is a new one

    # Verified: counted once however often Twilio tells it (queue action, then the status callback).
    sid = "CA" + "b" * 32
    conv = await waiting_call(sid, verified=True)
    await calls.left_queue(conv, sid, "hangup", 40)
    await calls.left_queue(conv, sid, "hangup", 41)
    assert abandoned(await redis.hgetall(keys.day_stats(paris_day()))) == 2
    redis_out = await redis.xrange(keys.stream("out", 0))
    [offer] = [m for m in out() if m.channel == "sms"]
    assert offer.id == f"{conv}.abandoned" and offer.urn == urn
    assert "répondez RAPPEL à ce SMS" in offer.text and "https://gw.example/callback?date=" in offer.text
    assert "slot=" in offer.text and CAMILLE.last_name not in offer.text and CAMILLE.number not in offer.text
    assert (await redis.hgetall(keys.callback_offer(urn)))["conv"] == conv

    # « Rappel » from her phone books the slot; the same SMS delivered again, or a second « RAPPEL », books nothing more.
    reply = inbound("sms", urn, "Rappel !", "SM" + "1" * 32)
    await router.handle(reply)
    await router.handle(reply)
    await router.handle(inbound("sms", urn, "RAPPEL", "SM" + "2" * 32))
    cb_id = await redis.hget(keys.conversation(conv), "callback_id")
    cb = await redis.hgetall(keys.callback(cb_id))
    assert cb["phone"] == CAMILLE.phone and cb["status"] == "pending" and "RAPPEL" in cb["comment"]
    assert await redis.zcard(keys.CALLBACKS_DUE) == 1
    redis_out = await redis.xrange(keys.stream("out", 0))
    confirmations = [m for m in out() if m.channel == "sms" and m.text.startswith("Votre demande de rappel")]
    assert len(confirmations) == 2 and all(cb["ref"] in m.text and m.urn == urn for m in confirmations)

    # « RAPPEL » from a number offered nothing is an ordinary message (the bot's).
    other = "tel:+33612345670"
    await router.handle(inbound("sms", other, "RAPPEL", "SM" + "3" * 32))
    assert await redis.zcard(keys.CALLBACKS_DUE) == 1
