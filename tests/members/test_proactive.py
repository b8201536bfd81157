"""Members told before they ask, in the product's process (real Redis, the real outbound stream): a paid claim
waits for the morning when SMS is closed, goes once, and takes the next channel when the member said STOP."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from redis.asyncio import Redis

from gateway import keys
from gateway.app import template_env
from gateway.envelope import Message
from gateway.settings import Settings
from members.changes import Change, RecordWriter
from members.importer import card_row, claim_row, complaint_row, member_row, membership_row
from members.privacy import MemberData
from members.proactive import EXAMPLES, News, news_of, preview, render_news, told_key
from server.product import Product

PARIS = ZoneInfo("Europe/Paris")
SMS_ENV = {"TWILIO_ACCOUNT_SID": "AC" + "2" * 32, "TWILIO_AUTH_TOKEN": "t" * 32, "TWILIO_FROM": "+33700000003"}
TUESDAY_NIGHT = dt.datetime(2026, 12, 8, 23, 10, tzinfo=PARIS)
WEDNESDAY_MORNING = dt.datetime(2026, 12, 9, 8, 30, tzinfo=PARIS)


def member(number: str, **extra: str) -> Change:
    row = {"number": number, "first_name": "Léa", "last_name": "Martin", "birth_date": "1980-02-14",
           "phone": "06 12 34 56 78", "email": "lea@example.org", "cover_level": "confort", "region": "Bretagne",
           "segment": "famille", "contribution_eur": "61,20", "contribution_call_date": "2027-01-05", **extra}  # fmt: skip
    return Change("members", number, number, member_row(row), 1)


def paid(number: str) -> Change:
    row = {"id": f"CL{number[1:]}", "member": number, "care_date": "2026-11-02", "kind": "pharmacie",
           "amount_eur": "80", "reimbursed_eur": "57,42", "status": "paid", "payment_date": "2026-12-01",
           "teletransmitted": "oui"}  # fmt: skip
    return Change("claims", number, row["id"], claim_row(row), 1)


def news(record: Any) -> News:
    found = news_of(record)
    assert found is not None
    return found


def vars_of(change: Change) -> dict[str, Any]:
    assert change.record is not None
    row = asdict(change.record)
    return {**row, "teletransmitted": "oui" if row["teletransmitted"] else "non"}


async def bulk(redis: Redis) -> list[Message]:
    return [Message.from_json(f["m"]) for _, f in await redis.xrange(keys.stream("bulk", 0))]


async def test_a_paid_claim_waits_for_the_morning_goes_once_and_skips_an_opted_out_channel(
    redis: Redis, settings_env: dict[str, str]
) -> None:
    product = Product(Settings.from_env({**settings_env, **SMS_ENV}), redis, roles=frozenset({"web"}))
    proactive = product.proactive
    await RecordWriter(redis).apply([member("M0400001", preferred_channel="sms"), paid("M0400001")])
    claim = paid("M0400001").record
    assert claim is not None
    assert await proactive.claim_paid(claim, TUESDAY_NIGHT) == "waiting"  # type: ignore[arg-type]
    assert await proactive.send_waiting(TUESDAY_NIGHT) == 0 and await bulk(redis) == []
    assert await proactive.send_waiting(WEDNESDAY_MORNING) == 1
    [msg] = await bulk(redis)
    assert (msg.channel, msg.urn) == ("sms", "tel:+33612345678")
    assert (
        msg.text == "Ma Mutuelle : un remboursement de 57,42 € a été versé le 1er décembre. Détail : répondez DETAIL."
    )
    assert await proactive.claim_paid(claim, WEDNESDAY_MORNING) == "already"  # type: ignore[arg-type]
    assert await proactive.send_waiting(WEDNESDAY_MORNING) == 0 and len(await bulk(redis)) == 1
    # A member who sent STOP by SMS is told by e-mail; one who declined these messages is not told.
    await redis.sadd(keys.opt_out("sms"), "tel:+33612345678")
    await RecordWriter(redis).apply([member("M0400002", preferred_channel="sms"), paid("M0400002"),
                                     member("M0400003", notify_optout="all"), paid("M0400003")])  # fmt: skip
    assert await proactive.claim_paid(paid("M0400002").record, TUESDAY_NIGHT) == "sent"  # type: ignore[arg-type]
    assert await proactive.claim_paid(paid("M0400003").record, WEDNESDAY_MORNING) == "declined"  # type: ignore[arg-type]
    assert [(m.channel, m.urn) for m in await bulk(redis)][1:] == [("email", "mailto:lea@example.org")]


async def test_a_complaint_answered_a_card_sent_a_membership_acknowledged_in_one_request_are_told_once_together(
    redis: Redis, settings_env: dict[str, str]
) -> None:
    product = Product(Settings.from_env({**settings_env, **SMS_ENV}), redis, roles=frozenset({"web"}))
    number = "M0400010"
    complaint = complaint_row({"id": "REC-2026-000042", "member": number, "received_date": "2026-11-20", "urgent": "non",
                               "status": "answered", "subject": "Retard", "answered_date": "2026-11-25"})  # fmt: skip
    card = card_row({"id": "CARTE-0042", "member": number, "status": "sent", "dispatch_date": "2026-12-01"})
    membership = membership_row({"id": "ADH-0042", "member": number, "received_date": "2026-11-02",
                                 "acknowledged_date": "2026-11-04", "documents_sent_date": ""})  # fmt: skip
    in_progress = claim_row({"id": "CL0400011", "member": number, "care_date": "2026-11-02", "kind": "pharmacie",
                             "amount_eur": "80", "reimbursed_eur": "", "status": "in_progress", "payment_date": "",
                             "teletransmitted": "non"})  # fmt: skip
    changes = [member(number, preferred_channel="email"),
               *(Change(kind, number, r.id, r, 1) for kind, r in (("complaints", complaint), ("cards", card),
                                                                  ("memberships", membership), ("claims", in_progress)))]  # fmt: skip
    await RecordWriter(redis).apply(changes)
    await product.proactive.changed(changes)
    await product.proactive.changed(changes)  # the same changes again: nothing new to tell
    [msg] = await bulk(redis)
    assert (msg.channel, msg.meta["thread"]["subject"]) == ("email", "Des nouvelles de votre dossier")
    assert msg.text == (
        "Ma Mutuelle : nous avons répondu à votre réclamation REC-2026-000042. Votre carte de tiers payant a été "
        "envoyée le 1er décembre. Votre adhésion a été enregistrée le 4 novembre ; vos documents suivent. "
        "Détail : répondez DETAIL."
    )
    # What the member's answer DETAIL is about, and when each record was told (for the daily figures).
    last = json.loads(await redis.get(keys.member_last_notice(number)))
    assert last["records"] == ["complaints:REC-2026-000042", "cards:CARTE-0042", "memberships:ADH-0042"]
    assert set(await redis.hkeys(keys.member_notices(number))) == set(last["records"])
    assert "claims:CL0400011" in await redis.hkeys(keys.member_changes(number))  # changed, nothing told
    # Erased with the member: what they were told of, and when.
    await MemberData(redis, stream_shards=1).erase(number, by="dpo")
    assert not await redis.keys(f"{keys.member(number)}:*told*") and not await redis.keys(f"{keys.member(number)}:not*")
    assert not await redis.exists(keys.member_changes(number))


async def test_changes_waiting_for_the_morning_go_in_one_message_without_what_was_told_meanwhile(
    redis: Redis, settings_env: dict[str, str]
) -> None:
    product = Product(Settings.from_env({**settings_env, **SMS_ENV}), redis, roles=frozenset({"web"}))
    proactive = product.proactive
    number = "M0400020"
    card = card_row({"id": "CARTE-0020", "member": number, "status": "sent", "dispatch_date": "2026-12-01"})
    second = Change("claims", number, "CL0400021", claim_row({**{k: str(v) for k, v in vars_of(paid(number)).items()},
                                                              "id": "CL0400021", "reimbursed_eur": "12"}), 1)  # fmt: skip
    await RecordWriter(redis).apply([member(number, preferred_channel="sms"), paid(number), second,
                                     Change("cards", number, card.id, card, 1)])  # fmt: skip
    first_claim, second_claim = paid(number).record, second.record
    assert await proactive.tell([news(first_claim)], TUESDAY_NIGHT) == ["waiting"]
    later = TUESDAY_NIGHT + dt.timedelta(minutes=20)
    assert await proactive.tell([news(second_claim)], later) == ["waiting"]
    assert await proactive.tell([news(card)], later + dt.timedelta(minutes=20)) == ["waiting"]
    # The second claim was told another way meanwhile (e.g. a replay that went out): left out of the group.
    await redis.set(told_key(number, "claims", "CL0400021", "paid"), "elsewhere")
    assert await proactive.send_waiting(WEDNESDAY_MORNING) == 1
    assert await proactive.send_waiting(WEDNESDAY_MORNING) == 0
    [msg] = await bulk(redis)
    assert msg.text == (
        "Ma Mutuelle : un remboursement de 57,42 € a été versé le 1er décembre. Votre carte de tiers payant a été "
        "envoyée le 1er décembre. Détail : répondez DETAIL."
    )
    assert msg.meta["changes"] == ["claims.CL0400020.paid", "cards.CARTE-0020.sent"]
    # Told: never again, alone or in another group.
    assert await proactive.tell([news(card), news(first_claim)], WEDNESDAY_MORNING) == ["already", "already"]


async def test_a_contribution_call_three_days_ahead_is_reminded_once_in_the_hours_unless_declined(
    redis: Redis, settings_env: dict[str, str]
) -> None:
    product = Product(Settings.from_env({**settings_env, **SMS_ENV}), redis, roles=frozenset({"web"}))
    proactive = product.proactive
    monday = dt.datetime(2026, 12, 7, 7, 0, tzinfo=PARIS)  # before the SMS hours
    await RecordWriter(redis).apply([
        member("M0400030", contribution_call_date="2026-12-10", preferred_channel="sms"),  # in 3 days
        member("M0400031", contribution_call_date="2026-12-11", preferred_channel="sms"),  # in 4 days: not yet
        member("M0400032", contribution_call_date="2026-12-09", notify_optout="contributions"),
    ])  # fmt: skip
    assert await proactive.remind_due(monday) == ["declined", "waiting"]  # by call date
    assert await proactive.remind_due(monday) == ["declined", "waiting"]  # looked at again: still one waiting
    assert await proactive.send_waiting(monday) == 0
    assert await proactive.send_waiting(monday + dt.timedelta(hours=2)) == 1
    [msg] = await bulk(redis)
    assert (msg.urn, msg.text) == (
        "tel:+33612345678",
        "Ma Mutuelle : rappel, votre cotisation de 61,20 € est due le 10 décembre.",
    )
    assert await proactive.remind_due(monday + dt.timedelta(hours=3)) == ["declined", "already"]
    assert len(await bulk(redis)) == 1


async def test_a_message_waiting_for_the_morning_is_in_the_members_export_and_never_goes_once_erased(
    redis: Redis, settings_env: dict[str, str]
) -> None:
    product = Product(Settings.from_env({**settings_env, **SMS_ENV}), redis, roles=frozenset({"web"}))
    proactive = product.proactive
    erased, kept = "M0400031", "M0400032"
    await RecordWriter(redis).apply([member(erased, preferred_channel="sms"), paid(erased),
                                     member(kept, preferred_channel="sms", phone="06 98 76 54 32"), paid(kept)])  # fmt: skip
    for number in (erased, kept):
        assert await proactive.claim_paid(paid(number).record, TUESDAY_NIGHT) == "waiting"  # type: ignore[arg-type]
    data = MemberData(redis, stream_shards=1)
    exported = (await data.export(erased))["proactive"]
    assert [(w["channel"], w["address"]) for w in exported["waiting"]] == [("sms", "tel:+33612345678")]
    assert "57,42 €" in exported["waiting"][0]["text"]
    report = await data.erase(erased, by="dpo")
    assert report.removed.get("messages waiting for their channel's hours") == 1, report
    assert (await data.export(erased))["proactive"]["waiting"] == []
    # In the morning only the other member's message goes.
    assert await proactive.send_waiting(WEDNESDAY_MORNING) == 1
    assert [m.urn for m in await bulk(redis)] == ["tel:+33698765432"]


async def test_messages_name_the_mutuelle_and_a_channel_may_have_its_own_wording(
    redis: Redis, settings_env: dict[str, str]
) -> None:
    env = {**settings_env, **SMS_ENV, "MUTUELLE_NAME": "Mutuelle L'Entraide"}
    product = Product(Settings.from_env(env), redis, roles=frozenset({"web"}))
    await RecordWriter(redis).apply([member("M0400041", preferred_channel="sms"), paid("M0400041")])
    assert await product.proactive.claim_paid(paid("M0400041").record, WEDNESDAY_MORNING) == "sent"  # type: ignore[arg-type]
    [msg] = await bulk(redis)
    assert msg.text.startswith("Mutuelle L'Entraide : un remboursement de 57,42 €"), msg.text  # not escaped
    # A wording of the mutuelle's own for e-mail; SMS keeps the shared one.
    own = jinja2.Environment(loader=jinja2.ChoiceLoader([
        jinja2.DictLoader({"proactive/claim_paid.email.text.j2": "{{ mutuelle }} : {{ amount }} € vous ont été versés."}),
        template_env().loader,  # type: ignore[list-item]
    ]), undefined=jinja2.StrictUndefined)  # fmt: skip
    values = {"amount": "57,42", "date": "5 décembre"}
    assert render_news(own, "claim_paid", "email", values, "M") == ("M : 57,42 € vous ont été versés.",
                                                                     "Votre remboursement a été versé")  # fmt: skip
    assert render_news(own, "claim_paid", "sms", values, "M")[0].startswith("M : un remboursement de 57,42 €")
    # The preview shows every kind on every channel, named and filled, nothing left unrendered.
    shown = preview(template_env(), ("sms", "email", "whatsapp"), "Mutuelle L'Entraide")
    assert {(p["kind"], p["channel"]) for p in shown} == {
        (k, c) for k in EXAMPLES for c in ("sms", "email", "whatsapp")
    }
    assert all(p["text"].startswith("Mutuelle L'Entraide : ") and "{{" not in p["text"] for p in shown)
    assert all(p.get("subject") for p in shown if p["channel"] == "email")
