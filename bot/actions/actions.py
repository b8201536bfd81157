"""The bot's custom actions (Rasa SDK action server, in the bot's virtualenv).

Everything that decides what a member may see is read from Redis on each turn (verification,
lock, handoff, records), never from Rasa slots alone: slots only carry the dialogue (which
question is pending, which claims were listed). The gateway's conversation id is Rasa's
sender id; the conversation hash gives the channel and the contact's linked member.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import unicodedata
from dataclasses import asdict
from typing import Any
from urllib.parse import urlsplit

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType, FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from gateway import keys
from members import numbers
from members.audit import audit
from members.records import Card, Claim, Complaint, Membership, MemberStore, Quote

from . import answers, detail, linking, notices, state, understand

_redis: Redis | None = None

STATUS_INTENTS = {
    "reimbursement_status": "remboursement",
    "complaint_status": "suivi de réclamation",
    "membership_status": "adhésion",
    "card_status": "carte de tiers payant",
    "quote_status": "devis",
    "contribution_question": "cotisation",
    "file_complaint": "nouvelle réclamation",
}
INTENT_LABELS = {
    **STATUS_INTENTS,
    "ask_human": "demande un conseiller",
    "callback_request": "demande de rappel",
    "give_identity": "identification",
    "faq_processing_delays": "délais",
    "faq_mediator": "médiateur",
    "faq_send_care_sheet": "feuille de soins",
    "faq_tiers_payant": "tiers payant",
    "faq_joining": "adhérer",
    "nlu_fallback": "message non compris",
}
FAQ_RESPONSES = {
    "faq_processing_delays": "utter_faq_processing_delays",
    "faq_mediator": "utter_faq_mediator",
    "faq_send_care_sheet": "utter_faq_send_care_sheet",
    "faq_tiers_payant": "utter_faq_tiers_payant",
    "faq_joining": "utter_faq_joining",
}
MENU = (
    "Je peux vous dire où en sont vos remboursements, réclamations, devis, votre carte de tiers payant, votre "
    "adhésion ou votre cotisation ; répondre sur les délais, le tiers payant, l'adhésion ou le médiateur ; "
    "enregistrer une réclamation ; ou vous mettre en relation avec un conseiller. Que souhaitez-vous ?"
)
SMALL_TALK_REPLY = {"thanks": "Avec plaisir.", "ok": "D'accord.", "wait": "Je vous attends."}

HANDOFF_TEXT = "Je vous mets en relation avec un conseiller. Il vous répondra ici, dans cette conversation."
LOCKED_TEXT = (
    "Je n'ai pas pu vérifier votre identité. Par sécurité, je ne peux rien vous dire sur votre dossier : "
    "un conseiller prend la suite et vous répondra ici."
)
GROUP_TEXT = (
    "Pour protéger vos données, je ne réponds pas sur un dossier dans une conversation de groupe. "
    "Écrivez-moi en message privé, ou demandez à parler à un conseiller."
)
EXPIRED_TEXT = "Votre vérification d'identité a expiré : reposez votre question."
CODE_EXPIRED_TEXT = (
    "Ce code a expiré : il était valable 10 minutes. Écrivez « renvoyez le code » pour en recevoir un nouveau."
)
TRIES_SPENT_TEXT = (
    "Trop de codes erronés ont été essayés aujourd'hui pour ce numéro d'adhérent : par sécurité, je ne vérifie "
    "plus de code pour ce dossier avant demain. Pour vous identifier, écrivez-nous depuis le téléphone ou "
    "l'adresse e-mail enregistrés dans votre dossier, appelez-nous ou demandez à être rappelé{where}."
)
QUIET_LOCKED_TEXT = (
    "Je n'ai pas pu vérifier votre identité. Par sécurité, je ne peux rien vous dire sur ce dossier. Pour être "
    "aidé, appelez-nous ou demandez à être rappelé{where}."
)
# « renvoyez le code », « je n'ai pas reçu le code », « toujours rien reçu », « un nouveau code svp »
RESEND = re.compile(
    r"\b(r?e?-?envo\w*|renvoi\w*|pas (bien |encore |du tout )?recu|rien recu|recu aucun|aucun code|"
    r"nouveau code|autre code|pas arrive|jamais arrive|toujours rien)\b"
)
CANCEL_WORDS = ("annuler", "annule", "laisse tomber", "stop", "rien", "non merci")


def callback_where() -> str:
    base = os.environ.get("PUBLIC_URL", "").rstrip("/")
    return f" : {base}/callback" if base else " sur notre site, rubrique « Être rappelé »"


def redis() -> Redis:
    """The product's Redis (member records, conversations, audit): a standalone URL, or a cluster's
    ``redis+cluster://host:port[,host:port…]`` as the gateway takes it (gateway/redis_client.py)."""
    global _redis
    if _redis is None:
        url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        parts = urlsplit(url)
        if parts.scheme in ("redis+cluster", "rediss+cluster"):
            hosts = [h.rsplit(":", 1) for h in parts.netloc.rsplit("@", 1)[-1].split(",") if h]
            nodes = [ClusterNode(host, int(port)) for host, port in hosts]
            cluster = RedisCluster(startup_nodes=nodes, decode_responses=True, password=parts.password,
                                   ssl=parts.scheme == "rediss+cluster")  # fmt: skip
            _redis = cluster  # the same commands as a single Redis, for the actions
        else:
            _redis = Redis.from_url(url, decode_responses=True)
    return _redis


def today() -> dt.date:
    return dt.date.today()


def fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", (text or "").lower())
    return "".join(c for c in text if not unicodedata.combining(c)).strip()


def latest_intent(tracker: Tracker) -> str:
    return str((tracker.latest_message.get("intent") or {}).get("name") or "")


def sender_contact(tracker: Tracker) -> str:
    """The gateway's contact of the message being answered (``""`` when Rasa is asked directly)."""
    meta = tracker.latest_message.get("metadata") or {}
    return str(meta.get("contact_id") or "")


async def verified(tracker: Tracker) -> state.Verification:
    """The conversation's verification for the sender of the message being answered."""
    return await state.verification(redis(), tracker.sender_id, sender_contact(tracker))


def group_chat(tracker: Tracker) -> bool:
    """A Telegram group (negative chat ids): everyone in it reads the answers and writes from the
    same address, so nobody in it is asked who they are and no record is ever disclosed there."""
    meta = tracker.latest_message.get("metadata") or {}
    return str(meta.get("urn") or "").startswith("telegram:-")


def turn_id(tracker: Tracker) -> str:
    """The gateway's inbound message id (stable across a replay), else Rasa's."""
    meta = tracker.latest_message.get("metadata") or {}
    return str(meta.get("msg_id") or tracker.latest_message.get("message_id") or "")


async def conversation(tracker: Tracker) -> dict[str, str]:
    data: dict[str, str] = await redis().hgetall(keys.conversation(tracker.sender_id))
    return data


async def linked_member(contact: str) -> str | None:
    """The member whose registered phone or e-mail the sender's address is (the message's sender,
    not the conversation's first one: an e-mail may join another contact's thread)."""
    if not contact:
        return None
    member = await redis().hget(keys.contact(contact), "member_id")
    return str(member) if member else None


def short(conv: dict[str, str]) -> bool:
    return conv.get("channel") == "sms"


def summary(tracker: Tracker, extra: str = "") -> str:
    """What the bot collected, for the agent: the member's requests in order (no message bodies)."""
    asked: list[str] = []
    for event in tracker.events:
        if event.get("event") != "user":
            continue
        name = str(((event.get("parse_data") or {}).get("intent") or {}).get("name") or "")
        label = INTENT_LABELS.get(name)
        if label and label not in asked:
            asked.append(label)
    text = "Demandes : " + (", ".join(asked) if asked else "aucune reconnue")
    return text + (f". {extra}" if extra else ".")


async def hand_off(
    dispatcher: CollectingDispatcher,
    tracker: Tracker,
    reason: str,
    *,
    text: str = HANDOFF_TEXT,
    extra: str = "",
    urgent: bool = False,
) -> None:
    conv = await conversation(tracker)
    if conv.get("status") == "handoff":
        return
    v = await verified(tracker)
    otp_meta = (tracker.latest_message.get("metadata") or {}).get("otp")
    every = otp_meta.get("handoff_every_s") if isinstance(otp_meta, dict) else None
    every_s = every if isinstance(every, int) else state.HANDOFF_EVERY_S
    if reason == "verification_failed" and not await state.handoff_allowed(redis(), v.candidate, every_s):
        # Strangers failing as this member number this hour: one of them reached the agents already.
        dispatcher.utter_message(text=QUIET_LOCKED_TEXT.format(where=callback_where()))
        return
    intent = str(tracker.get_slot("pending_query") or latest_intent(tracker))
    await state.handoff(
        redis(), tracker.sender_id, reason=reason, intent=intent, member=v.member, summary=summary(tracker, extra),
        urgent=urgent,
    )  # fmt: skip
    if text:
        dispatcher.utter_message(text=text)


RESET_IDENTITY = [SlotSet("identity_answer", None), SlotSet("identity_outcome", None)]


def offered_values(text: str, *, question: bool) -> dict[str, str]:
    """Identity values typed before they are asked: a member number (never ambiguous), a birth date
    only when the words say it is one or the message is nothing else (a date inside a question is the
    date of what is asked about), a code only when it is called one or typed alone."""
    out: dict[str, str] = {}
    folded = fold(text)
    if number := state.parse_member_number(text):
        out["number"] = number
    born = state.parse_birth_date(text, today())
    if born is not None and (state.BIRTH_CUES.search(folded) or not question):
        out["birth_date"] = born.isoformat()
    code = state.parse_code(text)
    if code and (re.search(r"\bcode\b", folded) or re.fullmatch(r"\d{3}\s?\d{3}", folded)):
        out["code"] = code
    return out


def merged_offered(tracker: Tracker, text: str, *, question: bool) -> dict[str, str]:
    try:
        before = json.loads(str(tracker.get_slot("offered") or "{}"))
    except ValueError:
        before = {}
    return {**(before if isinstance(before, dict) else {}), **offered_values(text, question=question)}


class StartQuery(Action):
    """Remembers the question (its words too: date, kind, amount, reference), then the identity form
    runs (it ends at once if already verified). General questions are answered without identity; values
    the member offered before being asked (a number, a birth date) are used now."""

    def name(self) -> str:
        return "action_start_query"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        text = str(tracker.latest_message.get("text") or "")
        await detail.note(redis(), tracker.sender_id, tracker.latest_message)  # « DETAIL », answered once verified
        intent = understand.corrected_intent(latest_intent(tracker), text)
        if intent in FAQ_RESPONSES:  # the same for everyone: no identity needed
            dispatcher.utter_message(response=FAQ_RESPONSES[intent])
            return [SlotSet("identity_outcome", "general"), SlotSet("identity_answer", None)]
        if understand.angry(text):
            dispatcher.utter_message(text=understand.ANGRY_ACK)
        question = intent in STATUS_INTENTS
        pending = intent if question else tracker.get_slot("pending_query")
        events: list[EventType] = [SlotSet("pending_query", pending), *RESET_IDENTITY]
        if question:
            events.append(SlotSet("query_text", text))
        offered = merged_offered(tracker, text, question=question)
        if group_chat(tracker) or not offered:
            return [*events, SlotSet("offered", json.dumps(offered) if offered else None)]
        v = await verified(tracker)
        conv = await conversation(tracker)
        if v.member or v.locked or conv.get("status") == "handoff":
            return [*events, SlotSet("offered", None)]
        return events + await use_offered(dispatcher, tracker, offered)


async def use_offered(dispatcher: CollectingDispatcher, tracker: Tracker, offered: dict[str, str]) -> list[EventType]:
    """Values typed before they were asked, used as the question comes (a wrong one counts as a try)."""
    conv_id, contact = tracker.sender_id, sender_contact(tracker)
    v = await state.verification(redis(), conv_id, contact)
    stage = v.stage
    if not stage:
        linked = await linked_member(contact)
        stage = "birth_date" if linked else "member_number"
        await state.begin(redis(), conv_id, stage, linked or "", contact)
        v = await state.verification(redis(), conv_id, contact)
        dispatcher.utter_message(text="Pour vous répondre, je dois d'abord vérifier votre identité.")
    if stage == "member_number" and offered.get("number"):
        await send_code(dispatcher, conv_id, contact, offered["number"])
        return [SlotSet("offered", None)]
    if stage == "birth_date" and offered.get("birth_date"):
        member = await MemberStore(redis()).get(v.candidate) if v.candidate else None
        if member is not None and offered["birth_date"] == member.birth_date:
            await state.succeed(redis(), conv_id, v.candidate, contact)
            return [SlotSet("offered", None), SlotSet("identity_outcome", "verified")]
        return [SlotSet("offered", None), *await failed_try(dispatcher, tracker, "La date de naissance indiquée")]
    return [SlotSet("offered", json.dumps(offered))]


async def send_code(
    dispatcher: CollectingDispatcher, conv_id: str, contact: str, number: str, *, known: bool = False
) -> None:
    await state.begin(redis(), conv_id, "otp", number, contact)
    # Asked whether or not the number exists: the gateway draws a code either way, sends it only to a
    # member's registered phone or e-mail, and says the same words to the sender. ``known``: the sender
    # writes from the member's own address (asked a code instead of the birth date): told where it went.
    dispatcher.utter_message(json_message={"otp": {"member": number, "action": "send_known" if known else "send"}})


async def failed_try(
    dispatcher: CollectingDispatcher, tracker: Tracker, what: str = "Cette réponse"
) -> list[EventType]:
    """A well-formed wrong value: counted; the third locks verification and hands off."""
    failures = await state.fail(redis(), tracker.sender_id)
    if failures >= state.MAX_FAILURES:
        await hand_off(dispatcher, tracker, "verification_failed", text=LOCKED_TEXT)
        return [SlotSet("identity_outcome", "locked")]
    left = state.MAX_FAILURES - failures
    dispatcher.utter_message(
        text=f"{what} ne permet pas de vous identifier. Il vous reste {left} essai{'s' if left > 1 else ''}."
    )
    return []


def hint(stage: str) -> str:
    """What a well-formed answer looks like: said instead of counting a badly formed one."""
    if stage == "member_number":
        fmt = numbers.current()
        return (
            f"Je n'ai pas reconnu de numéro d'adhérent. Il figure sur votre carte de tiers payant : {fmt.wording}, "
            f"par exemple {fmt.example}."
        )
    if stage == "otp":
        return "Je n'ai pas reconnu de code : indiquez les 6 chiffres reçus par SMS ou par e-mail."
    return "Je n'ai pas reconnu de date de naissance. Écrivez-la par exemple 05/09/1968 ou 5 septembre 1968."


class ValidateIdentityForm(FormValidationAction):
    def name(self) -> str:
        return "validate_identity_form"

    async def required_slots(
        self, domain_slots: list[str], dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[str]:
        if tracker.get_slot("identity_outcome") or group_chat(tracker):
            return []
        v = await verified(tracker)
        conv = await conversation(tracker)
        if v.member or v.locked or conv.get("status") == "handoff":
            return []
        return domain_slots

    async def validate_identity_answer(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if value is None:  # reset by an action, not typed by the member
            return {"identity_answer": None}
        text = str(value or "")
        conv_id = tracker.sender_id
        raw_intent = latest_intent(tracker)
        contact = sender_contact(tracker)
        v = await state.verification(redis(), conv_id, contact)
        if v.stage == "birth_date" and v.candidate and understand.wants_code(text):
            # A code to the registered phone or e-mail instead of the birth date: no try counted.
            await send_code(dispatcher, conv_id, contact, v.candidate, known=True)
            return {"identity_answer": None}
        if raw_intent == "ask_human":
            await hand_off(dispatcher, tracker, "ask_human")
            return {"identity_answer": text, "identity_outcome": "handoff"}
        if fold(text) in CANCEL_WORDS:
            dispatcher.utter_message(text="D'accord, je laisse cette demande. Que puis-je faire d'autre pour vous ?")
            return {"identity_answer": text, "identity_outcome": "cancelled"}
        if v.stage == "otp" and not state.parse_code(text) and RESEND.search(fold(text)):
            # The code's real state, or a new one: the gateway answers; not a failed answer.
            dispatcher.utter_message(json_message={"otp": {"member": v.candidate, "action": "resend"}})
            return {"identity_answer": None}
        # Read from the words wherever digits are typed: the model's reading of a message may change with
        # the number in it, and what the bot says must not (an existing and an unknown number alike).
        digits = bool(re.search(r"\d", text))
        words = understand.status_intent(text)
        intent = words or (understand.corrected_intent(raw_intent, text) if not digits else "")
        question = intent in STATUS_INTENTS
        slots: dict[str, Any] = {"identity_answer": None}
        if question:  # a question while being asked who they are: kept, answered once verified
            slots |= {"pending_query": intent, "query_text": text}
            if understand.angry(text):
                dispatcher.utter_message(text=understand.ANGRY_ACK)
        # The value asked for comes first, whatever the model made of the message: an existing and an
        # unknown number must get the same answer (« adhérent n° M… » may read as a question on joining).
        # Only the value asked for is taken, and a date inside a question is not a birth date.
        if v.stage == "member_number":
            number = state.parse_member_number(text)
            if number:
                await send_code(dispatcher, conv_id, contact, number)
                return slots
        elif v.stage == "otp":
            if state.parse_code(text):
                decided = await code_answer(dispatcher, tracker, text, v.candidate, contact)
                if decided is not None:
                    return slots | decided
                return slots | await _outcome(await failed_try(dispatcher, tracker), text)
        elif v.stage == "birth_date":
            born, well_formed = state.birth_date_typed(text, today())
            if born is not None and question and not state.BIRTH_CUES.search(fold(text)):
                born, well_formed = None, False
            if well_formed and born is not None:
                member = await MemberStore(redis()).get(v.candidate) if v.candidate else None
                if member is not None and born.isoformat() == member.birth_date:
                    await state.succeed(redis(), conv_id, v.candidate, contact)
                    return slots | {"identity_answer": text, "identity_outcome": "verified"}
                return slots | await _outcome(await failed_try(dispatcher, tracker), text)
        if question:
            return slots  # asked again, nothing counted
        general = understand.general_question(text) or (intent if intent in FAQ_RESPONSES else None)
        if general:
            dispatcher.utter_message(response=FAQ_RESPONSES[general])
            return slots
        talk = understand.small_talk(text)
        if talk == "greet":
            dispatcher.utter_message(text=f"{understand.greeting_in_kind(text)} !")
        elif talk:
            dispatcher.utter_message(text=SMALL_TALK_REPLY[talk])
        elif raw_intent in ("out_of_scope", "nlu_fallback") and not re.search(r"\d", text):
            dispatcher.utter_message(text="Je ne peux pas vous aider sur ce sujet.")
        else:  # a value in the wrong shape: an example, and no try counted
            dispatcher.utter_message(text=hint(v.stage))
        return slots


async def _outcome(events: list[EventType], text: str) -> dict[str, Any]:
    """The slots a failed try leaves: locked ends the form."""
    for event in events:
        if event.get("name") == "identity_outcome" and event.get("value"):
            return {"identity_answer": text, "identity_outcome": event["value"]}
    return {}


async def code_answer(
    dispatcher: CollectingDispatcher, tracker: Tracker, text: str, member: str, contact: str
) -> dict[str, Any] | None:
    """A code typed for ``member``: verified, said to be expired, refused for the day, or None (a
    failed answer, counted by the caller). Wrong codes count against the member number's day too."""
    conv_id = tracker.sender_id
    meta = tracker.latest_message.get("metadata") or {}
    raw = meta.get("otp")
    otp_meta: dict[str, Any] = raw if isinstance(raw, dict) else {}
    digests = [str(d) for d in otp_meta.get("digests") or [] if isinstance(d, str)]
    cap = otp_meta.get("failures_per_day")
    cap = cap if isinstance(cap, int) and cap > 0 else state.FAILURES_PER_DAY
    if member and await state.code_failures(redis(), member) >= cap:
        dispatcher.utter_message(text=TRIES_SPENT_TEXT.format(where=callback_where()))
        return {"identity_answer": text, "identity_outcome": "cancelled"}
    status = await state.check_code(redis(), conv_id, member, digests)
    if status == "ok" and await MemberStore(redis()).get(member) is not None:
        await state.succeed(redis(), conv_id, member, contact)
        await linking.code_verified(
            redis(), conv_id, contact, str(meta.get("channel") or ""), str(meta.get("urn") or "")
        )
        return {"identity_answer": text, "identity_outcome": "verified"}
    if status == "expired":
        dispatcher.utter_message(text=CODE_EXPIRED_TEXT)
        return {"identity_answer": None}
    if member and digests and await state.code_failed(redis(), member) == cap:
        # The day's last wrong code for this number: the member is told at the registered address.
        dispatcher.utter_message(json_message={"otp": {"member": member, "action": "alert"}})
    return None


class AskIdentity(Action):
    """Asks for the next factor: birth date if the address is a member's, else member number then code."""

    def name(self) -> str:
        return "action_ask_identity_answer"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        conv_id, contact = tracker.sender_id, sender_contact(tracker)
        v = await state.verification(redis(), conv_id, contact)
        stage = v.stage
        if not stage:
            member = await linked_member(contact)
            stage = "birth_date" if member else "member_number"
            await state.begin(redis(), conv_id, stage, member or "", contact)
            dispatcher.utter_message(text="Pour vous répondre, je dois d'abord vérifier votre identité.")
        if stage == "birth_date":
            dispatcher.utter_message(text="Quelle est votre date de naissance ? (JJ/MM/AAAA)")
        elif stage == "otp":
            dispatcher.utter_message(text="Indiquez le code à 6 chiffres reçu.")
        else:
            fmt = numbers.current()
            dispatcher.utter_message(
                text=f"Quel est votre numéro d'adhérent ? Il figure sur votre carte de tiers payant ({fmt.wording}, "
                f"par exemple {fmt.example})."
            )
        return []


class IdentityDone(Action):
    """After the identity form: answer the pending question if verified, else say why not."""

    def name(self) -> str:
        return "action_identity_done"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        events: list[EventType] = [*RESET_IDENTITY, SlotSet("pending_query", None)]
        conv = await conversation(tracker)
        if conv.get("status") == "handoff" or tracker.get_slot("identity_outcome") in ("cancelled", "general"):
            return events
        if group_chat(tracker):
            dispatcher.utter_message(text=GROUP_TEXT)
            return events
        v = await verified(tracker)
        if v.locked or not v.member:
            await hand_off(dispatcher, tracker, "verification_failed", text=LOCKED_TEXT)
            return events
        if await detail.answer(redis(), tracker.sender_id, v.member, conv, dispatcher, today(), turn_id(tracker)):
            return events
        pending = str(tracker.get_slot("pending_query") or "")
        # Several questions in one message (« ma carte et mon devis ? ») are all answered; the ones that
        # go on with a choice or a form (a claim to pick, a complaint to file) come last.
        order = [pending]
        if pending:  # the words of this question (none: the member only proved who they are)
            for other in understand.status_intents(str(tracker.get_slot("query_text") or "")):
                if other not in order and other != "file_complaint":
                    order.append(other)
        order.sort(key=lambda i: i in ("reimbursement_status", "file_complaint"))
        for intent in order:
            more = await answer(intent, v.member, conv, tracker, dispatcher)
            events += more
            if any(e.get("event") == "followup" for e in more):
                return events
        await offer_link(dispatcher, tracker)
        return events


async def offer_link(dispatcher: CollectingDispatcher, tracker: Tracker) -> None:
    """Once the question is answered: recognise this Telegram chat next time? (``linking.py``)"""
    if question := await linking.offer(redis(), tracker.sender_id, sender_contact(tracker)):
        dispatcher.utter_message(text=question)


CLAIM_SEARCH = {"dates": ("care_date", "received_date"), "kind": "kind", "amounts": ("amount_eur", "reimbursed_eur")}
COMPLAINT_SEARCH = {"dates": ("received_date", "due_date"), "kind": "subject", "amounts": ()}
QUOTE_SEARCH = {"dates": ("received_date",), "kind": "kind", "amounts": ("amount_eur", "out_of_pocket_eur")}
WHY = re.compile(r"\b(pourquoi|pk|pq|augment\w*|hausse|plus cher|change\w*|evolu\w*)\b")


async def apology_due(tracker: Tracker) -> bool:
    """One apology per conversation for a missed commitment; later ones only say it and offer help."""
    return bool(await redis().hsetnx(keys.conversation(tracker.sender_id), "bot_apologised", "1"))


async def answer(
    intent: str, member_id: str, conv: dict[str, str], tracker: Tracker, dispatcher: CollectingDispatcher
) -> list[EventType]:
    """The verified member's answer to ``intent``, for the record the question named (date, kind,
    amount, reference) across all of the member's records; every disclosure is audited."""
    store = MemberStore(redis())
    brief = short(conv)
    channel = conv.get("channel", "")
    asked = str(tracker.get_slot("query_text") or "")
    now = today()

    async def disclose(what: str, text: str, records: list[str]) -> None:
        await audit(redis(), member_id, tracker.sender_id, channel, what, records)
        await detail.count_question(redis(), turn_id(tracker), member_id, what, records)
        dispatcher.utter_message(text=text)

    if intent == "reimbursement_status":
        claims = answers.newest(await store.records(member_id, Claim.RECORD), "care_date")
        if not claims:
            dispatcher.utter_message(text="Nous n'avons aucune demande de remboursement à votre nom.")
            return []
        found = answers.find(claims, asked, today=now, **CLAIM_SEARCH)  # type: ignore[arg-type]
        if (found.named and not found.missed and len(found.matches) == 1) or len(claims) == 1:
            claim = found.matches[0] if found.named and not found.missed else claims[0]
            late = answers.claim_late(claim, now)
            text = answers.claim_answer(claim, now, short=brief, apologise=late and await apology_due(tracker))
            await disclose("claim", text, [str(claim["id"])])
            return []
        options = found.matches if found.named else claims
        return [SlotSet("claim_options", [str(c["id"]) for c in options]), SlotSet("claim_page", "0"),
                SlotSet("claim_choice", None), FollowupAction("claim_form")]  # fmt: skip
    if intent in ("complaint_status", "quote_status"):
        complaints = intent == "complaint_status"
        kind = Complaint.RECORD if complaints else Quote.RECORD
        records = answers.newest(await store.records(member_id, kind), "received_date")
        search = COMPLAINT_SEARCH if complaints else QUOTE_SEARCH
        found = answers.find(records, asked, today=now, **search)  # type: ignore[arg-type]
        shown = found.matches[:3]
        noun = "réclamation" if complaints else "devis"
        head = ""
        if records and found.missed:
            what = f" {found.what}" if found.what else " correspondant à votre demande"
            head = f"Je ne trouve pas de {noun}{what}. Voici les plus proches :"
        if complaints:
            late = any(answers.complaint_late(c, now) for c in shown)
            text = answers.complaints_answer(
                shown, short=brief, today=now, apologise=late and await apology_due(tracker), head=head
            )
        else:
            text = answers.quotes_answer(shown, short=brief, head=head)
        rest = [r for r in (found.matches if found.named and not found.missed else records) if r not in shown]
        if rest:
            text += f"\n« autres » : {len(rest)} de plus."
        await disclose("complaints" if complaints else "quotes", text, [str(r["id"]) for r in shown])
        return [SlotSet("more_kind", kind if rest else None),
                SlotSet("more_offset", json.dumps([str(r["id"]) for r in rest]) if rest else None)]  # fmt: skip
    if intent == "membership_status":
        files = await store.records(member_id, Membership.RECORD)
        late = answers.membership_late(files, now)
        text = answers.membership_answer(files, short=brief, today=now, apologise=late and await apology_due(tracker))
        await disclose("membership", text, [str(r["id"]) for r in files])
    elif intent == "card_status":
        cards = await store.records(member_id, Card.RECORD)
        await disclose("card", answers.card_answer(cards, short=brief), [str(r["id"]) for r in cards])
    elif intent == "contribution_question":
        member = await store.get(member_id)
        if member is not None:
            why = bool(WHY.search(fold(asked)))
            record = asdict(member)
            notice = await notices.contribution_notice(redis(), record)  # the advance notice sent, if any
            text = answers.contribution_answer(record, short=brief, why=why, today=now, notice=notice)
            await disclose("contribution", text, [member_id, *([notice["campaign"]] if notice else [])])
    elif intent == "file_complaint":
        return [SlotSet("complaint_subject", None), SlotSet("complaint_urgent", None), FollowupAction("complaint_form")]
    else:
        dispatcher.utter_message(text="Merci, votre identité est vérifiée. Que puis-je faire pour vous ?")
    return []


class ValidateClaimForm(FormValidationAction):
    def name(self) -> str:
        return "validate_claim_form"

    async def validate_claim_choice(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if value is None:  # reset by an action, not typed by the member
            return {"claim_choice": None}
        if latest_intent(tracker) == "ask_human":
            await hand_off(dispatcher, tracker, "ask_human")
            return {"claim_choice": "-"}
        v = await verified(tracker)
        if not v.member:  # expired while choosing (or another sender): the question is asked again
            dispatcher.utter_message(text=EXPIRED_TEXT)
            return {"claim_choice": "-", "choice_retried": None}
        text = str(value or "")
        options = [str(o) for o in tracker.get_slot("claim_options") or []]
        page = int(str(tracker.get_slot("claim_page") or "0") or 0)
        if understand.wants_more(text):
            if (page + 1) * answers.PAGE < len(options):
                return {"claim_choice": None, "claim_page": str(page + 1)}
            dispatcher.utter_message(text="Il n'y en a pas d'autre.")
            return {"claim_choice": None}
        claims = await _claims_in_order(v.member, options)
        chosen = answers.pick_claim(text, claims, today=today())
        if chosen is None:  # named by date, kind or amount among all the member's claims
            everything = answers.newest(await MemberStore(redis()).records(v.member, Claim.RECORD), "care_date")
            found = answers.find(everything, text, today=today(), **CLAIM_SEARCH)  # type: ignore[arg-type]
            if found.named and not found.missed and len(found.matches) == 1:
                chosen = found.matches[0]
        if chosen is not None:
            return {"claim_choice": str(chosen["id"])}
        other = understand.corrected_intent(latest_intent(tracker), text)
        if other in STATUS_INTENTS and other not in ("reimbursement_status", "file_complaint"):
            conv = await conversation(tracker)
            await answer(other, v.member, conv, _with_query(tracker, text), dispatcher)
            return {"claim_choice": "-", "choice_retried": None}
        if fold(text) in CANCEL_WORDS or tracker.get_slot("choice_retried"):
            dispatcher.utter_message(text="Je n'ai pas trouvé ce remboursement. Que puis-je faire d'autre pour vous ?")
            return {"claim_choice": "-", "choice_retried": None}
        first, last = page * answers.PAGE + 1, min(len(options), (page + 1) * answers.PAGE)
        dispatcher.utter_message(
            text=f"Répondez par le numéro du remboursement, de {first} à {last}, ou donnez sa date ou son type."
        )
        return {"claim_choice": None, "choice_retried": True}


def _with_query(tracker: Tracker, text: str) -> Tracker:
    """The tracker as seen by ``answer`` for a question asked while choosing a claim."""
    tracker.slots["query_text"] = text
    return tracker


async def _claims_in_order(member_id: str, ids: list[str]) -> list[dict[str, Any]]:
    by_id = {str(c["id"]): c for c in await MemberStore(redis()).records(member_id, Claim.RECORD)}
    return [by_id[i] for i in ids if i in by_id]


class AskClaimChoice(Action):
    def name(self) -> str:
        return "action_ask_claim_choice"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        v = await verified(tracker)
        if not v.member:
            dispatcher.utter_message(text=EXPIRED_TEXT)
            return [SlotSet("claim_choice", "-")]
        conv = await conversation(tracker)
        options = [str(o) for o in tracker.get_slot("claim_options") or []]
        page = int(str(tracker.get_slot("claim_page") or "0") or 0)
        shown_ids = options[page * answers.PAGE : (page + 1) * answers.PAGE]
        claims = await _claims_in_order(v.member, shown_ids)
        more = max(0, len(options) - (page + 1) * answers.PAGE)
        await audit(redis(), v.member, tracker.sender_id, conv.get("channel", ""), "claims_list", shown_ids)
        head = "Les suivants ; répondez par son numéro :" if page else ""
        if not page:  # why this list: nothing matched the date named, or several did
            everything = answers.newest(await MemberStore(redis()).records(v.member, Claim.RECORD), "care_date")
            asked = str(tracker.get_slot("query_text") or "")
            found = answers.find(everything, asked, today=today(), **CLAIM_SEARCH)  # type: ignore[arg-type]
            if found.missed:
                what = f" {found.what}" if found.what else " correspondant à votre demande"
                head = f"Je ne trouve pas de remboursement{what}. Voici les plus proches ; répondez par son numéro :"
            elif found.named:
                head = "Plusieurs remboursements correspondent. Lequel vous intéresse ? Répondez par son numéro :"
        dispatcher.utter_message(
            text=answers.claims_choice(claims, short=short(conv), first=page * answers.PAGE + 1, more=more, head=head)
        )
        return []


class AnswerClaim(Action):
    def name(self) -> str:
        return "action_answer_claim"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        events: list[EventType] = [SlotSet("claim_choice", None), SlotSet("claim_options", None),
                                   SlotSet("choice_retried", None), SlotSet("claim_page", None)]  # fmt: skip
        choice = str(tracker.get_slot("claim_choice") or "-")
        v = await verified(tracker)
        if choice == "-" or not v.member:
            return events
        conv = await conversation(tracker)
        found = await _claims_in_order(v.member, [choice])
        if not found:
            return events
        claim = found[0]
        await audit(redis(), v.member, tracker.sender_id, conv.get("channel", ""), "claim", [choice])
        await detail.count_question(redis(), turn_id(tracker), v.member, "claim", [choice])
        late = answers.claim_late(claim, today())
        text = answers.claim_answer(claim, today(), short=short(conv), apologise=late and await apology_due(tracker))
        dispatcher.utter_message(text=text)
        await offer_link(dispatcher, tracker)
        return events


URGENT_YES = re.compile(r"\b(oui|ouais|yes|urgent|urgente|tres urgent|absolument|ok)\b")
URGENT_NO = re.compile(r"\b(non|no|pas urgent|pas urgente|ca peut attendre|nan)\b")


class ValidateComplaintForm(FormValidationAction):
    def name(self) -> str:
        return "validate_complaint_form"

    async def validate_complaint_subject(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if value is None:  # reset by an action, not typed by the member
            return {"complaint_subject": None}
        text = str(value or "").strip()
        if len(text) < 3:
            dispatcher.utter_message(text="Décrivez l'objet de votre réclamation en une phrase, s'il vous plaît.")
            return {"complaint_subject": None}
        return {"complaint_subject": text[:500]}

    async def validate_complaint_urgent(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if value is None:  # reset by an action, not typed by the member
            return {"complaint_urgent": None}
        folded = fold(str(value or ""))
        intent = latest_intent(tracker)
        if URGENT_NO.search(folded) or intent == "deny":
            return {"complaint_urgent": "non"}
        if URGENT_YES.search(folded) or intent == "affirm":
            return {"complaint_urgent": "oui"}
        dispatcher.utter_message(text="Répondez simplement oui ou non.")
        return {"complaint_urgent": None}


class FileComplaint(Action):
    """Records the complaint with its due date (10 days, 3 if urgent), gives its reference, hands off."""

    def name(self) -> str:
        return "action_file_complaint"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        events: list[EventType] = [SlotSet("complaint_subject", None), SlotSet("complaint_urgent", None)]
        v = await verified(tracker)
        if not v.member:
            await hand_off(dispatcher, tracker, "verification_failed", text=LOCKED_TEXT)
            return events
        conv = await conversation(tracker)
        urgent = tracker.get_slot("complaint_urgent") == "oui"
        complaint = await state.file_complaint(
            redis(), tracker.sender_id, turn_id(tracker), v.member, str(tracker.get_slot("complaint_subject") or ""),
            urgent, today(),
        )  # fmt: skip
        await audit(redis(), v.member, tracker.sender_id, conv.get("channel", ""), "complaint_filed", [complaint.id])
        dispatcher.utter_message(
            text=answers.complaint_filed(
                complaint.id, dt.date.fromisoformat(complaint.due_date), urgent, short=short(conv)
            )
        )
        extra = f"Réclamation {complaint.id}{' urgente' if urgent else ''}, échéance {complaint.due_date}"
        await hand_off(dispatcher, tracker, "complaint", text="", extra=extra, urgent=urgent)
        return events


class Handoff(Action):
    def name(self) -> str:
        return "action_handoff"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        await hand_off(dispatcher, tracker, "ask_human")
        return []


NOT_UNDERSTOOD = ("nlu_fallback", "out_of_scope")


class Misunderstood(Action):
    """Not understood or off topic: the first time the bot says so, the second in a row it gives the
    menu of what it can do, and only the third in a row hands off. « autres » shows more records."""

    def name(self) -> str:
        return "action_misunderstood"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        text = str(tracker.latest_message.get("text") or "")
        if understand.wants_more(text) and tracker.get_slot("more_kind"):
            return await ShowMore().run(dispatcher, tracker, domain)
        asked = understand.corrected_intent("nlu_fallback", text)
        if asked in FAQ_RESPONSES:  # a general question the model did not recognise
            dispatcher.utter_message(response=FAQ_RESPONSES[asked])
            return []
        if asked in STATUS_INTENTS or detail.asked(tracker.latest_message):  # as any other status question
            events = await StartQuery().run(dispatcher, tracker, domain)
            return [*events, FollowupAction("identity_form")]
        intents = [
            str(((e.get("parse_data") or {}).get("intent") or {}).get("name") or "")
            for e in tracker.events
            if e.get("event") == "user"
        ]
        in_a_row = 0
        for name in reversed(intents):
            if name not in NOT_UNDERSTOOD:
                break
            in_a_row += 1
        if in_a_row >= 3:
            await hand_off(
                dispatcher, tracker, "misunderstood",
                text="Je ne comprends pas votre demande : je la transmets à un conseiller, qui vous répondra ici.",
            )  # fmt: skip
            return []
        if in_a_row == 2:
            dispatcher.utter_message(text=MENU)
            return []
        dispatcher.utter_message(response="utter_out_of_scope" if intents[-1:] == ["out_of_scope"] else "utter_default")
        return []


class ShowMore(Action):
    """« autres »: the next complaints or quotes of the last answer (claims page inside their list)."""

    def name(self) -> str:
        return "action_show_more"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        kind = str(tracker.get_slot("more_kind") or "")
        try:
            rest = [str(i) for i in json.loads(str(tracker.get_slot("more_offset") or "[]"))]
        except ValueError:
            rest = []
        v = await verified(tracker)
        if not kind or not rest:
            dispatcher.utter_message(text="Il n'y a rien d'autre à afficher. " + MENU)
            return []
        if not v.member:
            dispatcher.utter_message(text=EXPIRED_TEXT)
            return [SlotSet("more_kind", None), SlotSet("more_offset", None)]
        conv = await conversation(tracker)
        by_id = {str(r["id"]): r for r in await MemberStore(redis()).records(v.member, kind)}
        records = [by_id[i] for i in rest if i in by_id]
        shown, left = records[:3], [str(r["id"]) for r in records[3:]]
        now = today()
        if kind == Complaint.RECORD:
            late = any(answers.complaint_late(c, now) for c in shown)
            text = answers.complaints_answer(shown, short=short(conv), today=now,
                                             apologise=late and await apology_due(tracker))  # fmt: skip
        else:
            text = answers.quotes_answer(shown, short=short(conv))
        if left:
            text += f"\n« autres » : {len(left)} de plus."
        await audit(redis(), v.member, tracker.sender_id, conv.get("channel", ""), kind, [str(r["id"]) for r in shown])
        dispatcher.utter_message(text=text)
        return [
            SlotSet("more_kind", kind if left else None),
            SlotSet("more_offset", json.dumps(left) if left else None),
        ]


class Greet(Action):
    """A greeting in kind (« Bonsoir » → « Bonsoir ! »); a member number in it is kept for later."""

    def name(self) -> str:
        return "action_greet"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        text = str(tracker.latest_message.get("text") or "")
        dispatcher.utter_message(
            text=f"{understand.greeting_in_kind(text)} ! Je suis l'assistant de votre mutuelle. Je peux vous dire où "
            "en sont vos remboursements, réclamations, devis, votre carte ou votre adhésion. Que puis-je faire pour vous ?"
        )
        offered = merged_offered(tracker, text, question=False)
        return [SlotSet("offered", json.dumps(offered))] if offered else []


class CallbackInfo(Action):
    def name(self) -> str:
        return "action_callback_info"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        base = os.environ.get("PUBLIC_URL", "").rstrip("/")
        text = str(tracker.latest_message.get("text") or "")
        when = understand.callback_moment(text, today())
        query = f"?date={when[0].isoformat()}" + (f"&period={when[1]}" if when[1] else "") if when else ""
        where = f" : {base}/callback{query}" if base else " sur notre site, rubrique « Être rappelé »"
        said = ""
        if when:
            day_words = "demain" if when[0] == today() + dt.timedelta(days=1) else f"le {answers.fr_date(when[0])}"
            period = {"matin": " matin", "apres-midi": " après-midi"}.get(when[1], "")
            said = f"Pour {day_words}{period}, choisissez le créneau qui vous convient"
        else:
            said = "Un conseiller peut vous rappeler sur le créneau de votre choix. Choisissez-le"
        dispatcher.utter_message(
            text=f"{said} ici{where}. Vous pouvez aussi écrire « conseiller » pour échanger ici avec l'un d'eux."
        )
        return []
