"""Events out: what happened on the contact side, for the mutuelle's back office.

Each event is written once to one Redis stream (``keys.EVENTS_STREAM``), which consumers inside the
network read with their own consumer group, and which ``gateway/webhooks.py`` delivers as signed
webhooks to ``WEBHOOK_URLS``. An event's id is stable: a UUID derived from what happened (the
complaint's reference, the callback's id and attempt…), so an emitter that runs twice (a retried bot
action, a replayed stream entry) emits it once, and a receiver de-duplicates on it.

Events carry ids, dates, statuses and scores, never message text, names, addresses or health detail.

This module uses the standard library and ``gateway.keys`` only: the bot's actions, in Rasa's own
virtualenv (redis-py 4), emit through it too.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from gateway import keys

EVENTS_MAXLEN = 1_000_000  # about that many are kept for stream readers (deliveries keep their own copy)
SEEN_TTL_S = 30 * 24 * 3600
NAMESPACE = uuid.UUID("0d6c3c8e-5a7e-4f57-9a51-6b1f6a2b3e23")

COMPLAINT_FILED = "complaint.filed"
CALLBACK_REQUESTED = "callback.requested"
CALLBACK_OUTCOME = "callback.outcome"
HANDED_OFF = "conversation.handed_off"
CONVERSATION_CLOSED = "conversation.closed"
SURVEY_ANSWERED = "survey.answered"
OPTED_OUT = "member.opted_out"
NOTICE_DELIVERED = "notice.delivered"
NOTICE_FAILED = "notice.failed"
NOTICE_POSTAL = "notice.sent_by_post"
MEMBER_ERASED = "member.erased"
TYPES = (COMPLAINT_FILED, CALLBACK_REQUESTED, CALLBACK_OUTCOME, HANDED_OFF, CONVERSATION_CLOSED, SURVEY_ANSWERED,
         OPTED_OUT, NOTICE_DELIVERED, NOTICE_FAILED, NOTICE_POSTAL, MEMBER_ERASED)  # fmt: skip

# KEYS[1] = the event's seen marker, KEYS[2] = the stream. ARGV = ttl, id, type, at_ms, data, maxlen.
# Written once per event id, atomically with its marker (one hash tag).
_EMIT = """
if redis.call('SET', KEYS[1], ARGV[2], 'NX', 'EX', ARGV[1]) then
  return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'id', ARGV[2], 'type', ARGV[3],
    'at_ms', ARGV[4], 'data', ARGV[5])
end
return false
"""


def event_id(event_type: str, natural_key: str) -> str:
    """The stable id of the event ``event_type`` about ``natural_key`` (the same thing, the same id)."""
    return str(uuid.uuid5(NAMESPACE, f"{event_type}\n{natural_key}"))


async def emit(redis: Any, event_type: str, natural_key: str, data: dict[str, Any]) -> str:
    """Write the event once (a second call with the same type and key does nothing); returns its id."""
    if event_type not in TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    eid = event_id(event_type, natural_key)
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    await redis.eval(_EMIT, 2, keys.event_seen(eid), keys.EVENTS_STREAM, SEEN_TTL_S, eid, event_type,
                     int(time.time() * 1000), body, EVENTS_MAXLEN)  # fmt: skip
    return eid
