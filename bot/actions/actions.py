"""The bot's custom actions (Rasa SDK action server, in the bot's virtualenv).

Everything that decides what a member may see is read from Redis on each turn (verification,
lock, handoff, records), never from Rasa slots alone: slots only carry the dialogue (which
question is pending, which claims were listed). The gateway's conversation id is Rasa's
sender id; the conversation hash gives the channel and the contact's linked member.
"""

from __future__ import annotations

import datetime as dt
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
from members.audit import audit
from members.records import Card, Claim, Complaint, Membership, MemberStore, Quote

from . import answers, state

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
    "nlu_fallback": "message non compris",
}

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


class StartQuery(Action):
    """Remembers the question, then the identity form runs (it ends at once if already verified)."""

    def name(self) -> str:
        return "action_start_query"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        intent = latest_intent(tracker)
        pending = intent if intent in STATUS_INTENTS else tracker.get_slot("pending_query")
        return [SlotSet("pending_query", pending), SlotSet("query_text", tracker.latest_message.get("text")),
                *RESET_IDENTITY]  # fmt: skip


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
        if latest_intent(tracker) == "ask_human":
            await hand_off(dispatcher, tracker, "ask_human")
            return {"identity_answer": text, "identity_outcome": "handoff"}
        if fold(text) in CANCEL_WORDS:
            dispatcher.utter_message(text="D'accord, je laisse cette demande. Que puis-je faire d'autre pour vous ?")
            return {"identity_answer": text, "identity_outcome": "cancelled"}
        contact = sender_contact(tracker)
        v = await state.verification(redis(), conv_id, contact)
        if v.stage == "otp" and not state.parse_code(text) and RESEND.search(fold(text)):
            # The code's real state, or a new one: the gateway answers; not a failed answer.
            dispatcher.utter_message(json_message={"otp": {"member": v.candidate, "action": "resend"}})
            return {"identity_answer": None}
        intent = latest_intent(tracker)
        typed_a_factor = state.parse_member_number(text) or state.parse_code(text) or state.parse_birth_date(text)
        if intent in STATUS_INTENTS and not typed_a_factor:
            # Another question while being asked who they are: not a failed answer; asked again.
            return {"identity_answer": None, "pending_query": intent, "query_text": text}
        if v.stage == "member_number":
            number = state.parse_member_number(text)
            if number:
                await state.begin(redis(), conv_id, "otp", number, contact)
                # Asked whether or not the number exists: the gateway draws a code either way, sends it
                # only to a member's registered phone or e-mail, and says the same words to the sender.
                dispatcher.utter_message(json_message={"otp": {"member": number, "action": "send"}})
                return {"identity_answer": None}
        elif v.stage == "otp":
            decided = await code_answer(dispatcher, tracker, text, v.candidate, contact)
            if decided is not None:
                return decided
        elif v.stage == "birth_date":
            born = state.parse_birth_date(text, today())
            member = await MemberStore(redis()).get(v.candidate) if v.candidate else None
            if born is not None and member is not None and born.isoformat() == member.birth_date:
                await state.succeed(redis(), conv_id, v.candidate, contact)
                return {"identity_answer": text, "identity_outcome": "verified"}
        failures = await state.fail(redis(), conv_id)
        if failures >= state.MAX_FAILURES:
            await hand_off(dispatcher, tracker, "verification_failed", text=LOCKED_TEXT)
            return {"identity_answer": text, "identity_outcome": "locked"}
        left = state.MAX_FAILURES - failures
        dispatcher.utter_message(
            text=f"Cette réponse ne permet pas de vous identifier. Il vous reste {left} essai{'s' if left > 1 else ''}."
        )
        return {"identity_answer": None}


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
            dispatcher.utter_message(
                text="Quel est votre numéro d'adhérent ? Il figure sur votre carte de tiers payant (M suivi de 7 chiffres)."
            )
        return []


class IdentityDone(Action):
    """After the identity form: answer the pending question if verified, else say why not."""

    def name(self) -> str:
        return "action_identity_done"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        events: list[EventType] = [*RESET_IDENTITY, SlotSet("pending_query", None)]
        conv = await conversation(tracker)
        if conv.get("status") == "handoff" or tracker.get_slot("identity_outcome") == "cancelled":
            return events
        if group_chat(tracker):
            dispatcher.utter_message(text=GROUP_TEXT)
            return events
        v = await verified(tracker)
        if v.locked or not v.member:
            await hand_off(dispatcher, tracker, "verification_failed", text=LOCKED_TEXT)
            return events
        pending = str(tracker.get_slot("pending_query") or "")
        return events + await answer(pending, v.member, conv, tracker, dispatcher)


async def answer(
    intent: str, member_id: str, conv: dict[str, str], tracker: Tracker, dispatcher: CollectingDispatcher
) -> list[EventType]:
    """The verified member's answer to ``intent``; every disclosure is audited."""
    store = MemberStore(redis())
    brief = short(conv)
    channel = conv.get("channel", "")

    async def disclose(what: str, text: str, records: list[str]) -> None:
        await audit(redis(), member_id, tracker.sender_id, channel, what, records)
        dispatcher.utter_message(text=text)

    if intent == "reimbursement_status":
        claims = answers.recent_claims(await store.records(member_id, Claim.RECORD))
        if not claims:
            dispatcher.utter_message(text="Nous n'avons aucune demande de remboursement à votre nom.")
            return []
        chosen = answers.pick_claim(str(tracker.get_slot("query_text") or ""), claims) if len(claims) > 1 else None
        if len(claims) == 1 or chosen is not None:
            claim = chosen or claims[0]
            await disclose("claim", answers.claim_answer(claim, today(), short=brief), [str(claim["id"])])
            return []
        return [SlotSet("claim_options", [str(c["id"]) for c in claims]), SlotSet("claim_choice", None),
                FollowupAction("claim_form")]  # fmt: skip
    if intent == "complaint_status":
        records = await store.records(member_id, Complaint.RECORD)
        await disclose("complaints", answers.complaints_answer(records, short=brief), [str(r["id"]) for r in records])
    elif intent == "membership_status":
        records = await store.records(member_id, Membership.RECORD)
        await disclose("membership", answers.membership_answer(records, short=brief), [str(r["id"]) for r in records])
    elif intent == "card_status":
        records = await store.records(member_id, Card.RECORD)
        await disclose("card", answers.card_answer(records, short=brief), [str(r["id"]) for r in records])
    elif intent == "quote_status":
        records = await store.records(member_id, Quote.RECORD)
        await disclose("quotes", answers.quotes_answer(records, short=brief), [str(r["id"]) for r in records])
    elif intent == "contribution_question":
        member = await store.get(member_id)
        if member is not None:
            await disclose("contribution", answers.contribution_answer(asdict(member), short=brief), [member_id])
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
        options = [str(o) for o in tracker.get_slot("claim_options") or []]
        claims = await _claims_in_order(v.member, options)
        chosen = answers.pick_claim(str(value or ""), claims)
        if chosen is not None:
            return {"claim_choice": str(chosen["id"])}
        if fold(str(value)) in CANCEL_WORDS or tracker.get_slot("choice_retried"):
            dispatcher.utter_message(text="Je n'ai pas trouvé ce remboursement. Que puis-je faire d'autre pour vous ?")
            return {"claim_choice": "-", "choice_retried": None}
        dispatcher.utter_message(text=f"Répondez par le numéro du remboursement, de 1 à {len(claims)}.")
        return {"claim_choice": None, "choice_retried": True}


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
        claims = await _claims_in_order(v.member, options)
        await audit(redis(), v.member, tracker.sender_id, conv.get("channel", ""), "claims_list", options)
        dispatcher.utter_message(text=answers.claims_choice(claims, short=short(conv)))
        return []


class AnswerClaim(Action):
    def name(self) -> str:
        return "action_answer_claim"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        events: list[EventType] = [SlotSet("claim_choice", None), SlotSet("claim_options", None),
                                   SlotSet("choice_retried", None)]  # fmt: skip
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
        dispatcher.utter_message(text=answers.claim_answer(claim, today(), short=short(conv)))
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
    """Not understood (or out of scope): the first time the bot says so; twice in a row hands off."""

    def name(self) -> str:
        return "action_misunderstood"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        intents = [
            str(((e.get("parse_data") or {}).get("intent") or {}).get("name") or "")
            for e in tracker.events
            if e.get("event") == "user"
        ]
        if len(intents) >= 2 and intents[-2] in NOT_UNDERSTOOD and intents[-1] in NOT_UNDERSTOOD:
            await hand_off(
                dispatcher, tracker, "misunderstood",
                text="Je ne comprends pas votre demande : je la transmets à un conseiller, qui vous répondra ici.",
            )  # fmt: skip
            return []
        dispatcher.utter_message(response="utter_out_of_scope" if intents[-1:] == ["out_of_scope"] else "utter_default")
        return []


class CallbackInfo(Action):
    def name(self) -> str:
        return "action_callback_info"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        base = os.environ.get("PUBLIC_URL", "").rstrip("/")
        where = f" : {base}/callback" if base else " sur notre site, rubrique « Être rappelé »"
        dispatcher.utter_message(
            text=f"Un conseiller peut vous rappeler sur le créneau de votre choix. Choisissez-le ici{where}. "
            "Vous pouvez aussi écrire « conseiller » pour échanger ici avec l'un d'eux."
        )
        return []
