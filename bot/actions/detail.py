"""« DETAIL » after a message the mutuelle sent first, and the status questions those messages avoid.

A proactive message (members/proactive.py) says what changed without health detail and ends with
« Détail : répondez DETAIL. »; the records it was about are kept in the member's slot
(``keys.member_last_notice``). The member's answer « DETAIL » (any case, « détail », « le détail svp »)
reaches the bot as the intent ``give_identity`` (the gateway sends it as Rasa's ``/give_identity``,
with ``metadata.detail``: no model retraining), so the identity form runs as for any question. Once
verified, ``answer`` gives the detail of those records (a claim's act, amounts and dates), for the
verified member only, and audits it.

Every status question the bot answers is counted per day (``keys.day_stats``): ``status_questions``,
``status_after_notice`` (a proactive message told the member about one of the records asked about in
the 7 days before) and ``status_changed_untold`` (none did, but the back office changed one of them
in those 7 days). Each turn is counted once (a retried action counts nothing more). No Rasa SDK here
beyond the dispatcher's ``utter_message``: tested directly.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import asdict
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from gateway import keys
from members.audit import audit
from members.records import Card, Claim, Complaint, Membership, MemberStore

from . import answers, understand

PARIS = ZoneInfo("Europe/Paris")
ASKED_FIELD = "detail_asked_ms"  # in the conversation's hash: « DETAIL » was asked, when (ms)
ASKED_FOR_MS = 30 * 60 * 1000  # verification must end within this for the detail to be given
AFTER_NOTICE_MS = 7 * 24 * 3600 * 1000
COUNTED_TTL_S = 3 * 24 * 3600
NOTHING_TEXT = (
    "Je ne trouve pas de message récent de notre part sur votre dossier. Que souhaitez-vous savoir ? "
    "Par exemple : où en est mon remboursement ?"
)
# The kinds a proactive message names, and where the bot reads them.
RECORDS = {"claims": Claim.RECORD, "complaints": Complaint.RECORD, "cards": Card.RECORD,
           "memberships": Membership.RECORD}  # fmt: skip
# What the bot's answers disclose (``audit``'s "what") -> the kind of record they are about.
KIND_OF_ANSWER = {"claim": "claims", "complaints": "complaints", "quotes": "quotes", "card": "cards",
                  "membership": "memberships", "contribution": "contributions"}  # fmt: skip


class Utterer(Protocol):
    def utter_message(self, text: str | None = None, **kwargs: Any) -> None: ...


def asked(latest_message: dict[str, Any]) -> bool:
    """The message being answered is « DETAIL » (as the gateway flags it, or in its own words)."""
    meta = latest_message.get("metadata") or {}
    return bool(meta.get("detail")) or understand.detail_request(str(latest_message.get("text") or ""))


async def note(redis: Any, conv_id: str, latest_message: dict[str, Any]) -> None:
    """A question starts: « DETAIL » is remembered, to be answered once identity is verified; any other
    question forgets an earlier « DETAIL » (its answer is the one given then)."""
    if asked(latest_message):
        await redis.hset(keys.conversation(conv_id), ASKED_FIELD, int(time.time() * 1000))
    else:
        await redis.hdel(keys.conversation(conv_id), ASKED_FIELD)


async def answer(
    redis: Any, conv_id: str, member_id: str, conv: dict[str, str], dispatcher: Utterer, today: dt.date, turn: str
) -> bool:
    """Give the verified member the detail of what their last proactive message was about; False when
    « DETAIL » was not asked (lately) in this conversation. Answered on one turn only: the same turn again
    (a retried action) gives the same answer, without auditing or counting it twice."""
    asked = str(await redis.hget(keys.conversation(conv_id), ASKED_FIELD) or "")
    again = asked == f"done:{turn}"
    if not again:
        if not asked.isdigit() or time.time() * 1000 - int(asked) > ASKED_FOR_MS:
            return False
        await redis.hset(keys.conversation(conv_id), ASKED_FIELD, f"done:{turn}")
    raw = await redis.get(keys.member_last_notice(member_id))
    refs = [str(r) for r in json.loads(raw).get("records", [])] if raw else []
    short = conv.get("channel") == "sms"
    store = MemberStore(redis)
    texts: list[str] = []
    shown: list[str] = []
    for ref in refs:
        kind, _, rid = ref.partition(":")
        if kind == "contributions":
            member = await store.get(member_id)
            if member is not None:
                texts.append(answers.contribution_answer(asdict(member), short=short, today=today))
                shown.append(ref)
            continue
        if kind not in RECORDS:
            continue
        found = await redis.hget(f"{keys.member(member_id)}:{RECORDS[kind]}", rid)
        if found is None:  # deleted since
            continue
        record = json.loads(found)
        if kind == "claims":
            texts.append(answers.claim_answer(record, today, short=short, apologise=False))
        elif kind == "complaints":
            texts.append(answers.complaints_answer([record], short=short, today=today, apologise=False))
        elif kind == "cards":
            texts.append(answers.card_answer([record], short=short))
        else:
            texts.append(answers.membership_answer([record], short=short, today=today, apologise=False))
        shown.append(ref)
    if not texts:
        dispatcher.utter_message(text=NOTHING_TEXT)
        return True
    if not again:
        await audit(redis, member_id, conv_id, conv.get("channel", ""), "detail", shown)
        await redis.hincrby(keys.day_stats(paris_day()), "detail_answers", 1)
    dispatcher.utter_message(text="\n".join(texts))
    return True


def paris_day(at_ms: float | None = None) -> str:
    at = dt.datetime.fromtimestamp((at_ms if at_ms is not None else time.time() * 1000) / 1000, PARIS)
    return at.date().isoformat()


# KEYS[1] = the turn's marker, KEYS[2] = the day's figures (one hash tag). ARGV = ttl, then the counters.
_COUNT = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  for i = 2, #ARGV do redis.call('HINCRBY', KEYS[2], ARGV[i], 1) end
  return 1
end
return 0
"""


async def count_question(redis: Any, turn: str, member_id: str, what: str, records: list[str]) -> str:
    """Count one status question answered (``what``, about ``records``): returns its class, "after_notice",
    "changed_untold" or "" (neither). Once per turn and kind of answer."""
    kind = KIND_OF_ANSWER.get(what)
    if kind is None or not turn:
        return ""
    now_ms = time.time() * 1000
    if kind == "contributions":
        told = [v for k, v in (await redis.hgetall(keys.member_notices(member_id))).items() if k.startswith(kind)]
        changed: list[Any] = []
    else:
        refs = [f"{kind}:{r}" for r in records]
        told = list(await redis.hmget(keys.member_notices(member_id), refs)) if refs else []
        changed = list(await redis.hmget(keys.member_changes(member_id), refs)) if refs else []

    def recent(values: list[Any]) -> bool:
        return any(str(v).isdigit() and now_ms - int(v) <= AFTER_NOTICE_MS for v in values if v)

    cls = "after_notice" if recent(told) else "changed_untold" if recent(changed) else ""
    counters = ["status_questions"] + ([f"status_{cls}"] if cls else [])
    day = paris_day(now_ms)
    await redis.eval(_COUNT, 2, keys.stats_counted(day, f"{turn}:{what}"), keys.day_stats(day), COUNTED_TTL_S,
                     *counters)  # fmt: skip
    return cls
