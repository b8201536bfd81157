"""The agents' desk on a real Redis: queue order and routing, exclusive taking, capacity, replies on
the member's channel, transfer, close with the satisfaction survey, give back, callbacks, complaints,
daily figures. Handoffs are made by the bot's own code (bot/actions/state.py)."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from redis.asyncio import Redis

from agents.desk import PARIS, Desk, DeskError, paris_day
from agents.survey import Survey
from bot.actions import state as bot_state
from gateway import keys
from gateway.contacts import UNPROVEN, Contacts
from gateway.conversations import Conversations
from gateway.envelope import Message, inbound
from gateway.responders import AckResponder
from gateway.router import Router
from gateway.streams import Streams
from members.records import Complaint, MemberStore
from staff.users import User, UserError, Users
from staff.web import Refused
from tests.camille import plant_camille

JULIE = User("julie", "Julie", "agent", ("benefits",), 2)
MARC = User("marc", "Marc", "agent", ("benefits", "complaints"), 3)
SOPHIE = User("sophie", "Sophie", "supervisor", ("benefits", "quotes", "complaints", "sales"), 5)


@pytest.fixture
def router(redis: Redis) -> Router:
    streams = Streams(redis, shards=1, maxlen=10_000, dedup_ttl_s=60)
    # The survey is the router's detour, as the composition root (server/product.py) wires it.
    return Router(redis, streams, AckResponder(), Contacts(redis), Conversations(redis), detours=[Survey(redis)])


@pytest.fixture
def desk(redis: Redis, router: Router) -> Desk:
    return Desk(redis, router, sms_enabled=True)


async def handed_off(router: Router, urn: str, *, intent: str, reason: str = "ask_human", urgent: bool = False) -> str:
    """A member writes by SMS and the bot hands the conversation off (as its action does)."""
    msg = inbound("sms", urn, "je veux un conseiller", f"SM{time.time_ns()}")
    await router.handle(msg)
    contact = await router.redis.get(keys.address(urn))
    conv = str(await router.redis.get(keys.open_conversation(contact, "sms")))
    await bot_state.handoff(router.redis, conv, reason=reason, intent=intent, member=None, summary="Demandes : x.",
                            urgent=urgent)  # fmt: skip
    return conv


async def outbound(redis: Redis) -> list[Message]:
    return [Message.from_json(f["m"]) for _, f in await redis.xrange(keys.stream("out", 0))]


async def test_queue_urgent_first_then_waiting_time_and_only_my_skills(router: Router, desk: Desk) -> None:
    first = await handed_off(router, "tel:+33600000001", intent="card_status")
    quotes = await handed_off(router, "tel:+33600000002", intent="quote_status")
    urgent = await handed_off(router, "tel:+33600000003", intent="file_complaint", reason="complaint", urgent=True)
    later = await handed_off(router, "tel:+33600000004", intent="reimbursement_status")
    assert [i.id for i in await desk.queue(SOPHIE)] == [urgent, first, quotes, later]
    assert [i.id for i in await desk.queue(MARC)] == [urgent, first, later]
    assert [i.id for i in await desk.queue(JULIE)] == [first, later]  # no quotes, no complaints
    with pytest.raises(DeskError) as refused:
        await desk.take(JULIE, quotes)
    assert refused.value.status == 403


async def test_one_agent_takes_a_conversation_and_the_member_learns_their_name(
    router: Router, desk: Desk, redis: Redis
) -> None:
    conv = await handed_off(router, "tel:+33600000001", intent="card_status")
    await desk.take(JULIE, conv)
    with pytest.raises(DeskError, match="n'attend plus"):
        await desk.take(MARC, conv)
    with pytest.raises(DeskError) as other:
        await desk.conversation(MARC, conv)  # a second agent cannot open it
    assert other.value.status == 403
    greeting = (await outbound(redis))[-1]
    assert greeting.text.startswith("Bonjour, je suis Julie") and greeting.urn == "tel:+33600000001"
    stats = await redis.hgetall(keys.day_stats(paris_day()))
    assert (stats["handoffs"], stats["picked"], stats["picked_in_target"]) == ("1", "1", "1")


async def test_capacity_and_take_next(router: Router, desk: Desk) -> None:
    convs = [await handed_off(router, f"tel:+3360000001{i}", intent="card_status") for i in range(3)]
    assert (await desk.take_next(JULIE))["id"] == convs[0]
    assert (await desk.take_next(JULIE))["id"] == convs[1]
    with pytest.raises(DeskError, match="déjà 2 conversations"):
        await desk.take_next(JULIE)
    assert [c["id"] for c in await desk.mine(JULIE)] == convs[:2]


async def test_reply_goes_out_once_on_the_members_channel(router: Router, desk: Desk, redis: Redis) -> None:
    conv = await handed_off(router, "tel:+33600000001", intent="card_status")
    await desk.take(JULIE, conv)
    first = await desk.reply(JULIE, conv, "Votre carte part demain.", "client-0001")
    again = await desk.reply(JULIE, conv, "Votre carte part demain.", "client-0001")  # double click
    assert first == again
    sent = [m for m in await outbound(redis) if m.meta.get("agent") == "julie"]
    assert [(m.channel, m.urn, m.text) for m in sent] == [("sms", "tel:+33600000001", "Votre carte part demain.")]
    with pytest.raises(DeskError) as not_mine:
        await desk.reply(MARC, conv, "intrus", "client-0002")
    assert not_mine.value.status == 403
    view = await desk.conversation(JULIE, conv)
    assert [m["text"] for m in view["messages"]][-1] == "Votre carte part demain."


async def test_close_sends_the_survey_and_counts_the_answers(router: Router, desk: Desk, redis: Redis) -> None:
    urn = "tel:+33600000001"
    conv = await handed_off(router, urn, intent="card_status")
    await desk.take(JULIE, conv)
    await desk.close(JULIE, conv)
    assert (await outbound(redis))[-1].text.startswith("Merci d'avoir échangé avec nous.")
    for text in ("4", "9"):
        await router.handle(inbound("sms", urn, text, f"SM{time.time_ns()}"))
    replies = [m.text for m in await outbound(redis)][-2:]
    assert replies[0].startswith("Merci ! Et de 0 à 10") and replies[1].startswith("Merci pour vos réponses")
    record = await redis.hgetall(keys.conversation(conv))
    assert (record["csat"], record["nps"], record["status"]) == ("4", "9", "closed")
    stats = await redis.hgetall(keys.day_stats(paris_day()))
    assert (stats["csat_sum"], stats["csat_n"], stats["nps_promoters"], stats["closed"]) == ("4", "1", "1", "1")
    # The next message is a new conversation (for the bot), not the closed one.
    await router.handle(inbound("sms", urn, "bonjour", f"SM{time.time_ns()}"))
    contact = await redis.get(keys.address(urn))
    assert await redis.get(keys.open_conversation(contact, "sms")) != conv


async def test_transfer_and_give_back(router: Router, desk: Desk, redis: Redis) -> None:
    conv = await handed_off(router, "tel:+33600000001", intent="card_status")
    await desk.take(JULIE, conv)
    with pytest.raises(DeskError, match="inconnu"):
        await desk.transfer(JULIE, conv, to_agent="nobody")
    await Users(redis).create("marc", "motdepasse-solide", first_name="Marc", role="agent", skills=["benefits"])
    await desk.transfer(JULIE, conv, to_agent="marc")
    assert (await redis.hgetall(keys.conversation(conv)))["assigned_agent"] == "marc"
    marc = await Users(redis).get("marc")
    assert marc is not None
    await desk.transfer(marc, conv, to_skill="complaints")
    assert [i.id for i in await desk.queue(MARC)] == [conv] and await desk.queue(JULIE) == []
    await desk.take(MARC, conv)
    await desk.give_back(MARC, conv)
    record = await redis.hgetall(keys.conversation(conv))
    assert record["status"] == "open" and "assigned_agent" not in record
    notes = [json.loads(n)["text"] for n in await redis.lrange(keys.conversation_notes(conv), 0, -1)]
    assert notes == ["Transférée à Marc (marc).", "Transférée à la file Réclamations."]


async def test_callback_outcomes_inform_the_member(router: Router, desk: Desk, redis: Redis) -> None:
    slot = int(time.time()) + 60
    await redis.hset(keys.callback("cb1"), mapping={"id": "cb1", "phone": "+33600000009", "status": "pending",
                                                    "reason": "devis", "slot_start": "2026-12-02T10:00:00+01:00",
                                                    "slot_end": "2026-12-02T12:00:00+01:00"})  # fmt: skip
    await redis.zadd(keys.CALLBACKS_DUE, {"cb1": slot})
    await router.handle(inbound("callback", "tel:+33600000009", "Rappel : devis", "cb1", kind="callback_request"))
    [item] = await desk.queue(SOPHIE)
    assert (item.kind, item.skill) == ("callback", "quotes")
    assert await desk.queue(JULIE) == []  # not her skill
    await desk.callback_outcome(SOPHIE, "cb1", "no_answer")
    assert (await outbound(redis))[-1].text.startswith("Nous avons essayé de vous appeler sans succès.")
    assert await desk.queue(SOPHIE) == []  # back in 30 minutes
    await desk.callback_outcome(SOPHIE, "cb1", "done")
    assert (await redis.hgetall(keys.callback("cb1")))["status"] == "done"
    assert await redis.zscore(keys.CALLBACKS_DUE, "cb1") is None


async def test_complaints_by_due_date_and_answered_in_time(desk: Desk, redis: Redis) -> None:
    today = dt.date.today()
    store = MemberStore(redis)
    async with redis.pipeline(transaction=False) as pipe:
        for ref, days, urgent in (("REC-A", 8, False), ("REC-B", 1, True), ("REC-C", 5, False)):
            received = today - dt.timedelta(days=2)
            store.write_record(pipe, Complaint(ref, "M0000042", received.isoformat(), urgent,
                                               (today + dt.timedelta(days=days)).isoformat(), "open", "objet", ""))  # fmt: skip
        await pipe.execute()
    assert [c["id"] for c in await desk.complaints()] == ["REC-B", "REC-C", "REC-A"]
    done = await desk.complaint_done(SOPHIE, "M0000042", "REC-B", "answered")
    assert done["answered_date"] == paris_day() and done["status"] == "answered"
    assert [c["id"] for c in await desk.complaints(SOPHIE)] == ["REC-C", "REC-A"]
    stats = await redis.hgetall(keys.day_stats(paris_day()))
    assert (stats["complaints_answered"], stats["complaints_in_time"]) == ("1", "1")
    # What the agent saw and did is in the member's audit trail: who, what, when.
    trail = [(e["what"], e["records"], e["agent"]) for _, e in await redis.xrange(keys.member_audit("M0000042"))]
    assert trail == [
        ("agent_marked_complaint_answered", '["REC-B"]', SOPHIE.login),
        ("agent_listed_complaint", '["REC-C"]', SOPHIE.login),
        ("agent_listed_complaint", '["REC-A"]', SOPHIE.login),
    ]


async def test_users_passwords_and_sessions(redis: Redis) -> None:
    users = Users(redis)
    with pytest.raises(UserError, match="trop court"):
        await users.create("julie", "court", first_name="Julie", role="agent", skills=["benefits"])
    await users.create("julie", "un-mot-de-passe-long", first_name="Julie", role="agent", skills=["benefits"])
    stored = await redis.hget(keys.user("julie"), "password")
    assert stored.startswith("$argon2id$") and "un-mot-de-passe-long" not in stored
    assert await users.authenticate("julie", "mauvais-mot-de-passe") is None
    assert await users.authenticate("inconnu", "un-mot-de-passe-long") is None
    user = await users.authenticate("Julie", "un-mot-de-passe-long")
    assert user is not None and user.first_name == "Julie"
    token, csrf = await users.open_session(user)
    assert await redis.exists(keys.session(token)) == 0  # only the digest is stored
    found = await users.session(token)
    assert found is not None and found[1] == csrf
    await users.close_session(token)
    assert await users.session(token) is None
    allowed = [await users.login_allowed("julie", "10.0.0.1") for _ in range(7)]
    assert allowed[:5] == [True] * 5 and allowed[5:] == [False, False]


async def test_supervisor_assigns_and_the_record_shows_every_channel(router: Router, desk: Desk, redis: Redis) -> None:
    await plant_camille(redis, register=False)
    await router.handle(inbound("email", "mailto:camille@example.fr", "Bonjour", "<m1@example.fr>"))
    conv = await handed_off(router, "tel:+33600000001", intent="card_status")
    await Users(redis).create("julie", "un-mot-de-passe-long", first_name="Julie", role="agent", skills=["benefits"])
    with pytest.raises(DeskError) as not_supervisor:
        await desk.assign(MARC, conv, "julie")
    assert not_supervisor.value.status == 403
    await desk.assign(SOPHIE, conv, "julie")
    julie = await Users(redis).get("julie")
    assert julie is not None
    view = await desk.conversation(julie, conv)
    assert view["member"]["member"]["last_name"] == "Durand"
    assert [p["channel"] for p in view["past"]] == ["email"]  # the same member's e-mail conversation
    audit = await redis.xrange(keys.member_audit("M0000042"))
    assert [(e["what"], e["agent"]) for _, e in audit] == [("agent_opened_record", "julie")]


async def callback_request(redis: Redis, router: Router, cb_id: str, phone: str, *, due: int, name: str = "") -> None:
    """A callback request as the callback channel stores it (hash, due set, inbound message)."""
    await redis.hset(keys.callback(cb_id), mapping={"id": cb_id, "ref": "RAP-7K4Q", "phone": phone, "status": "pending",
                                                    "reason": "remboursement", "comment": "Après 16 h svp", "name": name,
                                                    "slot_start": "2026-12-02T14:00:00+01:00",
                                                    "slot_end": "2026-12-02T18:00:00+01:00"})  # fmt: skip
    await redis.set(keys.callback_ref("RAP-7K4Q"), cb_id)
    await redis.zadd(keys.CALLBACKS_DUE, {cb_id: due})
    await router.handle(inbound("callback", f"tel:{phone}", "Un remboursement", cb_id, kind="callback_request"))


async def test_a_callback_is_a_work_item_taken_by_one_agent_with_the_members_record(
    router: Router, desk: Desk, redis: Redis
) -> None:
    await plant_camille(redis, register=False)
    await callback_request(redis, router, "cb1", "+33600000001", due=int(time.time()) - 60, name="")
    [item] = await desk.queue(JULIE)
    shown = item.public()["callback"]
    assert (shown["name"], shown["phone"], shown["subject"], shown["comment"], shown["slot"]) == (
        "inconnu", "+33600000001", "Remboursement", "Après 16 h svp", "14 h – 18 h")  # fmt: skip
    # Opened by its short reference: the member's record (audited) and past contacts are there.
    view = await desk.callbacks.detail(JULIE, "rap 7k4q")
    assert view["member"]["member"]["last_name"] == "Durand"
    assert [p["channel"] for p in view["past"]] == ["callback"]
    trail = [(e["what"], e["agent"], e["channel"]) for _, e in await redis.xrange(keys.member_audit("M0000042"))]
    assert trail == [("agent_opened_record", "julie", "callback")]
    # "Prendre le suivant" takes it; nobody else can, and it leaves the queue.
    taken = await desk.take_next(JULIE)
    assert (taken["kind"], taken["id"], taken["held_by"]) == ("callback", "cb1", "julie")
    with pytest.raises(Refused, match="Un autre conseiller"):
        await desk.callbacks.take(MARC, "cb1")
    with pytest.raises(Refused) as not_his:
        await desk.callback_outcome(MARC, "cb1", "done")
    assert not_his.value.status == 403
    assert await desk.queue(SOPHIE) == [] and [c["id"] for c in await desk.callbacks.mine(JULIE)] == ["cb1"]
    # « Pas de réponse »: due again 30 minutes later, back in the queue then, released by Julie.
    before = time.time()
    await desk.callback_outcome(JULIE, "cb1", "no_answer")
    due = await redis.zscore(keys.CALLBACKS_DUE, "cb1")
    assert before + 30 * 60 - 1 <= due <= time.time() + 30 * 60 + 1
    assert await desk.callbacks.mine(JULIE) == [] and await desk.queue(JULIE) == []
    record = await redis.hgetall(keys.callback("cb1"))
    assert (record["status"], record["attempts"], "held_by" in record) == ("no_answer", "1", False)
    await redis.zadd(keys.CALLBACKS_DUE, {"cb1": int(time.time())})  # half an hour later
    assert [i.id for i in await desk.queue(MARC)] == ["cb1"]


async def test_callbacks_count_against_capacity_and_the_rappels_view_lists_the_coming_days(
    router: Router, desk: Desk, redis: Redis
) -> None:
    convs = [await handed_off(router, f"tel:+3360000002{i}", intent="card_status") for i in range(2)]
    await callback_request(redis, router, "cb1", "+33600000009", due=int(time.time()) - 10, name="Jean Petit")
    await desk.take(JULIE, convs[0])
    await desk.callbacks.take(JULIE, "cb1")
    with pytest.raises(DeskError, match="déjà 2"):
        await desk.take(JULIE, convs[1])  # one conversation and one callback: Julie is full
    tomorrow = dt.datetime.combine(dt.date.today() + dt.timedelta(days=1), dt.time(15), PARIS)
    await redis.hset(keys.callback("cb2"), mapping={"id": "cb2", "phone": "+33600000008", "status": "pending",
                                                    "reason": "devis", "slot_start": tomorrow.isoformat(),
                                                    "slot_end": tomorrow.replace(hour=18).isoformat()})  # fmt: skip
    await redis.zadd(keys.CALLBACKS_DUE, {"cb2": int(tomorrow.timestamp())})
    sophie = await desk.callbacks.ahead(SOPHIE, 7)
    assert len(sophie["days"]) == 7
    today, second = sophie["days"][0], sophie["days"][1]
    assert [(s["label"], [c["name"] for c in s["callbacks"]]) for s in today["slots"]] == [
        ("14 h – 18 h", ["Jean Petit"])
    ]
    assert today["slots"][0]["callbacks"][0]["status"] == "in_progress"
    assert [(s["label"], [c["id"] for c in s["callbacks"]]) for s in second["slots"]] == [("15 h – 18 h", ["cb2"])]
    julie = await desk.callbacks.ahead(JULIE, 7)  # quotes are not her skill
    assert [c["id"] for d in julie["days"] for s in d["slots"] for c in s["callbacks"]] == ["cb1"]


async def test_a_conversation_from_an_unproven_sender_is_flagged_and_shows_no_record(
    router: Router, desk: Desk, redis: Redis
) -> None:
    """A mail claiming Camille's address whose DMARC failed at the MX: the agent opening it is told the
    sender is not verified and sees no member record; Camille's own mail is not flagged."""
    await plant_camille(redis)
    urn = "mailto:camille@example.fr"
    forged = inbound("email", urn, "Je suis née le 12/03/1975", "<f1@forger.example>", automated=True,
                     meta={"automated_reason": "unauthenticated:dmarc=fail"}, sender_authentic=False)  # fmt: skip
    await router.handle(forged)
    await router.handle(inbound("email", urn, "Bonjour", "<m1@example.fr>", sender_authentic=True))
    forged_contact = await redis.get(keys.address(UNPROVEN + urn))
    forged_conv = str(await redis.get(keys.open_conversation(forged_contact, "email")))
    real_conv = str(await redis.get(keys.open_conversation(await redis.get(keys.address(urn)), "email")))
    assert forged_conv != real_conv

    # Unproven mail from an address no member registered: stored only (forged spam would fill the queue).
    stranger = inbound("email", "mailto:nobody@example.org", "Promo", "<s1@spam.example>", automated=True,
                       meta={"automated_reason": "unauthenticated:dmarc=fail"}, sender_authentic=False)  # fmt: skip
    await router.handle(stranger)
    # In the queue, flagged, with nothing sent to anyone (the ack responder answers Camille's own mail).
    [item] = await desk.queue(SOPHIE)
    assert (item.id, item.reason) == (forged_conv, "unproven_sender")
    assert "expéditeur non vérifié" in item.summary
    assert [m.urn for m in await outbound(redis)] == [urn]
    assert len([m for m in await outbound(redis) if m.conversation_id == forged_conv]) == 0

    view = await desk.conversation(SOPHIE, forged_conv)
    assert view["conversation"]["sender_unproven"] is True
    assert view["member"] is None and view["past"] == []  # nothing of Camille's next to it
    assert [m["text"] for m in view["messages"]] == ["Je suis née le 12/03/1975"]  # kept whole for the agent
    real = await desk.conversation(SOPHIE, real_conv)
    assert "sender_unproven" not in real["conversation"]
    assert real["member"]["member"]["last_name"] == "Durand"


async def test_an_agent_undoes_a_linked_telegram_account_from_the_record(
    router: Router, desk: Desk, redis: Redis
) -> None:
    """The record beside a conversation lists the Telegram chat the member chose to have recognised; the agent
    who may open the conversation undoes the link (audited with their login); another agent may not."""
    from members import links

    await plant_camille(redis)
    await router.handle(inbound("telegram", "telegram:5550042", "bonjour", "tg-1"))
    chat = str(await redis.get(keys.address("telegram:5550042")))
    assert await links.link(redis, "M0000042", chat, channel="telegram", address="telegram:5550042", conv_id="x")
    conv = await handed_off(router, "tel:+33600000001", intent="card_status")
    await desk.take(JULIE, conv)
    view = await desk.conversation(JULIE, conv)
    assert [(a["contact"], a["channel"]) for a in view["member"]["linked_accounts"]] == [(chat, "telegram")]
    with pytest.raises(DeskError) as not_theirs:
        await desk.unlink_account(MARC, conv, chat)
    assert not_theirs.value.status == 403
    done = await desk.unlink_account(JULIE, conv, chat)
    assert done == {"ok": True, "linked_accounts": []}
    assert not await redis.hget(keys.contact(chat), "member_id")  # a stranger's chat again: number and code
    with pytest.raises(DeskError) as gone:
        await desk.unlink_account(JULIE, conv, chat)
    assert gone.value.status == 404
    trail = [(e["what"], e["agent"]) for _, e in await redis.xrange(keys.member_audit("M0000042"))]
    assert ("account_unlinked", "julie") in trail
