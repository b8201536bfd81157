"""Prometheus metrics, exposed at /metrics. Labels never carry personal data."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

INBOUND_ACCEPTED = Counter("gateway_inbound_accepted_total", "Inbound messages accepted", ["channel"])
INBOUND_DUPLICATES = Counter("gateway_inbound_duplicates_total", "Inbound redeliveries ignored", ["channel"])
INBOUND_REJECTED = Counter("gateway_inbound_rejected_total", "Inbound requests refused", ["channel", "reason"])
INBOUND_HANDLED = Counter("gateway_inbound_handled_total", "Inbound messages handled by the router", ["channel"])
FLOODED = Counter(
    "gateway_inbound_flooded_total",
    "Inbound messages stored but not answered: their sender wrote too fast",
    ["channel"],
)
REPLIES_QUEUED = Counter("gateway_outbound_queued_total", "Outbound messages queued", ["channel"])
SENT = Counter("gateway_outbound_sent_total", "Outbound messages accepted by the provider", ["channel"])
SEND_FAILED = Counter("gateway_outbound_failed_total", "Outbound messages failed for good", ["channel", "reason"])
SEND_RETRIED = Counter("gateway_outbound_retried_total", "Outbound send attempts to be retried", ["channel"])
STATUS_UPDATES = Counter("gateway_status_callbacks_total", "Delivery status callbacks", ["channel", "status"])
SEND_SECONDS = Histogram("gateway_send_seconds", "Time for one provider send", ["channel"])
CALLS = Counter(
    "gateway_calls_total",
    "Phone calls, by event: received, turn, holding (reply fetched by a redirect), queued, answered, "
    "answered_60 (within 60 s), abandoned, unanswered (left the queue otherwise), ended",
    ["event"],
)
PROACTIVE_MESSAGES = Counter(
    "gateway_proactive_messages_total", "Messages sent first to members (members/proactive.py)", ["channel", "grouped"]
)
PROACTIVE_CHANGES = Counter("gateway_proactive_changes_total", "Record changes told in those messages", ["kind"])
