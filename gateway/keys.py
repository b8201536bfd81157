"""Every Redis key the gateway uses, in one place.

Keys that one command or script touches together share a hash tag (the part in braces)
so the same code runs on Redis Cluster. Streams are split into shards by the member's
address, so one conversation always lands on the same shard and keeps its order.
"""

from __future__ import annotations

import zlib

PREFIX = "gw"


def shard_of(urn: str, shards: int) -> int:
    return zlib.crc32(urn.encode()) % shards if shards > 1 else 0


# Streams: kind is "in" (inbound, read by the router), "out" (replies, read by the dispatcher) or
# "bulk" (campaign notices, read by the dispatcher within a share of each provider's rate).
def stream(kind: str, shard: int) -> str:
    return f"{PREFIX}:{{{kind}:{shard}}}:stream"


def seen(kind: str, shard: int, dedup_id: str) -> str:
    """De-duplication marker; same slot as its stream so accepting is one atomic script."""
    return f"{PREFIX}:{{{kind}:{shard}}}:seen:{dedup_id}"


def attempts(kind: str, shard: int) -> str:
    return f"{PREFIX}:{{{kind}:{shard}}}:attempts"


def dead(kind: str, shard: int) -> str:
    return f"{PREFIX}:{{{kind}:{shard}}}:dead"


def retry(shard: int) -> str:
    """Outbound messages waiting for their next attempt (sorted set, score = due ms)."""
    return f"{PREFIX}:{{out:{shard}}}:retry"


def retry_payload(shard: int) -> str:
    return f"{PREFIX}:{{out:{shard}}}:retrymsg"


# Contacts: a person with addresses on several channels.
def contact(contact_id: str) -> str:
    return f"{PREFIX}:contact:{{{contact_id}}}"


def contact_addresses(contact_id: str) -> str:
    return f"{PREFIX}:contact:{{{contact_id}}}:urns"


def contact_conversations(contact_id: str) -> str:
    return f"{PREFIX}:contact:{{{contact_id}}}:convs"


def address(urn: str) -> str:
    """urn -> contact id."""
    return f"{PREFIX}:urn:{urn}"


def open_conversation(contact_id: str, channel: str) -> str:
    return f"{PREFIX}:contact:{{{contact_id}}}:open:{channel}"


# Conversations: their record, the ordered history and the messages themselves.
def conversation(conv_id: str) -> str:
    return f"{PREFIX}:conv:{{{conv_id}}}"


def conversation_log(conv_id: str) -> str:
    """Sorted set of message ids, score = creation time in ms."""
    return f"{PREFIX}:conv:{{{conv_id}}}:log"


def message(conv_id: str, msg_id: str) -> str:
    return f"{PREFIX}:conv:{{{conv_id}}}:msg:{msg_id}"


def handled(conv_id: str, msg_id: str) -> str:
    """Set once the router has fully handled an inbound message (replies enqueued)."""
    return f"{PREFIX}:conv:{{{conv_id}}}:done:{msg_id}"


def provider_ref(channel: str, external_id: str) -> str:
    """Provider's outbound id -> "conv_id msg_id", for status callbacks."""
    return f"{PREFIX}:pref:{channel}:{external_id}"


def email_thread(message_id: str) -> str:
    """An e-mail Message-ID we sent or received -> conversation id."""
    return f"{PREFIX}:mailthread:{message_id}"


# Opt-outs per channel address (SMS STOP / START).
def opt_out(channel: str) -> str:
    return f"{PREFIX}:optout:{channel}"


def whatsapp_window(urn: str) -> str:
    """When the member last wrote on WhatsApp (epoch ms), kept 24 h: WhatsApp's customer-service window,
    inside which free text may be sent (outside it only approved templates). One key per address, its
    own slot: the channel reads and writes it alone."""
    return f"{PREFIX}:wawindow:{{{urn}}}"


def info_opt_out(channel: str) -> str:
    """Addresses that declined non-mandatory information on ``channel`` (mandatory notices still go)."""
    return f"{PREFIX}:optout-info:{channel}"


# Rate limiting (GCRA): one key per bucket.
def rate(bucket: str) -> str:
    return f"{PREFIX}:rate:{bucket}"


def email_sender_pace(address: str) -> str:
    """Recent mails from one e-mail address (sorted set: mail id, score = arrival ms), for the mail-loop guard."""
    return f"{PREFIX}:mailpace:{{{address}}}"


def flood_told(urn: str) -> str:
    """Set while a sender who writes too fast has been told so (once per quarter hour)."""
    return f"{PREFIX}:flood-told:{urn}"


# Member records index (the records themselves arrive with the bot issue).
def member(member_id: str) -> str:
    return f"mbr:{{{member_id}}}"


def member_contacts(member_id: str) -> str:
    """Contacts (one per person and channel address set) known to be this member."""
    return f"mbr:{{{member_id}}}:contacts"


def member_links(member_id: str) -> str:
    """Accounts the member chose to have recognised (a Telegram chat): contact id -> JSON (channel,
    address, when, conversation). Beside the member's other keys: one hash tag, erased with them."""
    return f"mbr:{{{member_id}}}:links"


def member_by_phone(e164: str) -> str:
    return f"mbr:phone:{e164}"


def member_by_email(email: str) -> str:
    return f"mbr:email:{email.lower()}"


# Callback requests (for the agents' queue).
def callback(request_id: str) -> str:
    return f"{PREFIX}:callback:{{{request_id}}}"


CALLBACKS_DUE = f"{PREFIX}:callbacks:due"  # sorted set: request id, score = slot start (epoch s)


def callback_ref(reference: str) -> str:
    """A callback's short reference (``RAP-7K4Q``) -> its request id (SET NX: never two the same)."""
    return f"{PREFIX}:cbref:{{{reference}}}"


def agent_callbacks(login: str) -> str:
    """The callbacks an agent holds (taken, not yet recorded)."""
    return f"{PREFIX}:user:{{{login}}}:callbacks"


# Web chat sessions: per-session delivery log the socket replays on reconnect.
def webchat_outbox(session_id: str) -> str:
    return f"{PREFIX}:webchat:{{{session_id}}}:out"


def webchat_shown(session_id: str) -> str:
    """What a session's outbox already holds (message id -> entry id), so each is shown once."""
    return f"{PREFIX}:webchat:{{{session_id}}}:shown"


def webchat_session(session_id: str) -> str:
    """A session's life (hash: created_ms, last_ms, ended, view, private), for its idle and absolute
    lifetimes, the « Terminer la conversation » button and the masking of a reopened history."""
    return f"{PREFIX}:webchat:{{{session_id}}}:session"


WEBCHAT_NOTIFY = f"{PREFIX}:webchat:notify"  # pub/sub channel: session ids with new messages


# The bot's per-conversation security state (verification is kept in the conversation hash).
def conversation_otp(conv_id: str) -> str:
    """The one-time code sent for this conversation (hash: member, digest, expiry), with a TTL."""
    return f"{PREFIX}:conv:{{{conv_id}}}:otp"


def member_otp_day(member_id: str, day: str) -> str:
    """One-time codes for a member number (existing or not) on one day, every conversation together
    (hash: sent, failed, alerted), kept two days."""
    return f"mbr:{{{member_id}}}:otp:{day}"


def member_otp_handoff(member_id: str) -> str:
    """Set for an hour once a failed verification against this member number went to the agents."""
    return f"mbr:{{{member_id}}}:otp:handoff"


def complaint_filed(conv_id: str, turn_id: str) -> str:
    """Reference of the complaint filed on a given turn, so a retried action files it once."""
    return f"{PREFIX}:conv:{{{conv_id}}}:complaint:{turn_id}"


RETENTION_INDEX = f"{PREFIX}:retention:convs"  # sorted set: conversation id, score = last message (ms)
HANDOFF_QUEUE = f"{PREFIX}:handoff:queue"  # sorted set: conversation id, score = handoff time (ms)


def member_audit(member_id: str) -> str:
    """Stream of every disclosure of this member's data (who, what, when, channel)."""
    return f"mbr:{{{member_id}}}:audit"


AUDIT_ALL = "mbr:audit"  # the same entries for all members, for the compliance officer
COMPLAINT_SEQ = "mbr:seq:complaint"


# Agents' desk: users, sessions, queue, assignments, satisfaction and daily figures.
def user(login: str) -> str:
    return f"{PREFIX}:user:{{{login}}}"


USERS = f"{PREFIX}:users"  # set of logins


def session(token_digest: str) -> str:
    """A console session, keyed by the digest of its cookie (the cookie itself is never stored)."""
    return f"{PREFIX}:sess:{{{token_digest}}}"


def agent_conversations(login: str) -> str:
    """Conversations an agent holds (set)."""
    return f"{PREFIX}:user:{{{login}}}:convs"


AGENTS_ONLINE = f"{PREFIX}:agents:online"  # sorted set: login, score = last seen (ms)
CONSOLE_NOTIFY = f"{PREFIX}:console:notify"  # pub/sub: conversation ids that changed
PICKUPS = f"{PREFIX}:agents:pickups"  # list of recent pick-up waits (ms), for the expected wait


def conversation_notes(conv_id: str) -> str:
    return f"{PREFIX}:conv:{{{conv_id}}}:notes"


def survey_pending(contact_id: str) -> str:
    """The closed conversation whose satisfaction survey the contact is answering."""
    return f"{PREFIX}:contact:{{{contact_id}}}:survey"


def day_stats(day: str) -> str:
    """Counters of one day (Europe/Paris date, YYYY-MM-DD)."""
    return f"{PREFIX}:stats:{{{day}}}"


def day_agents(day: str) -> str:
    """Logins of the agents and supervisors who used the console that day."""
    return f"{PREFIX}:stats:{{{day}}}:agents"


COMPLAINTS_DUE = "mbr:complaints:due"  # sorted set: "<member> <reference>", score = due date (epoch s)


# Back-office integration (issue 23): API keys, record versions, events out.
def api_key(token_digest: str) -> str:
    """An API key of a back-office system, keyed by the SHA-256 of the key (the key itself is never stored)."""
    return f"{PREFIX}:apikey:{{{token_digest}}}"


API_KEYS = f"{PREFIX}:apikeys"  # hash: key name -> digest of its current key


def member_versions(member_id: str) -> str:
    """The back office's version of each of the member's records ("<kind>:<id>" -> "<version> <digest>"),
    beside the records so one script compares and writes them."""
    return f"mbr:{{{member_id}}}:versions"


# Events out: one stream and its webhook deliveries, one hash tag (the scripts touch them together).
EVENTS_STREAM = f"{PREFIX}:{{events}}:stream"
EVENTS_DELIVERIES = f"{PREFIX}:{{events}}:deliveries"  # sorted set: "<event id> <url>", score = due (ms)
EVENTS_PAYLOADS = f"{PREFIX}:{{events}}:payloads"  # hash: "<event id> <url>" -> body, then attempts
EVENTS_DEAD = f"{PREFIX}:{{events}}:dead"  # stream: deliveries that kept failing, for supervisors


def event_seen(natural_key: str) -> str:
    """Set once an event was emitted, so an emitter that runs twice emits it once."""
    return f"{PREFIX}:{{events}}:seen:{natural_key}"


# Phone calls (channels/voice): one hash per call, keyed by Twilio's CallSid.
def call(call_sid: str) -> str:
    """A call's state: caller, attestation, conversation, turn ids (``turn:<n>`` -> inbound message id),
    queue and bridge times. Kept a day after the call."""
    return f"{PREFIX}:call:{{{call_sid}}}"


def conversation_call(conv_id: str) -> str:
    """The live call of a conversation (its CallSid), while the call lasts."""
    return f"{PREFIX}:conv:{{{conv_id}}}:call"


def call_abandoned(call_sid: str) -> str:
    """Set once when a waiting caller hung up: the call is counted abandoned, and offered a callback, once."""
    return f"{PREFIX}:call:{{{call_sid}}}:abandoned"


def callback_offer(urn: str) -> str:
    """The callback offered by SMS to a verified caller who hung up while waiting (hash: conversation,
    call, member), answered « RAPPEL » from that phone (``agents/calls.py``). Kept a day."""
    return f"{PREFIX}:offer:{{{urn}}}"


def agent_leg(call_sid: str) -> str:
    """An outbound leg we placed (an agent's phone, or a member called back): what it is for (hash)."""
    return f"{PREFIX}:leg:{{{call_sid}}}"


# Members told before they ask (members/proactive.py, issue 23): in the member's slot, erased with them.
def member_notices(member_id: str) -> str:
    """When the member was last told of each record ("<kind>:<id>" -> epoch ms), for the status
    questions a message did or did not avoid."""
    return f"mbr:{{{member_id}}}:notices"


def member_last_notice(member_id: str) -> str:
    """The records the member's last proactive message was about (JSON), for their answer DETAIL."""
    return f"mbr:{{{member_id}}}:notice:last"


def member_changes(member_id: str) -> str:
    """When the back office last changed each record through the records API ("<kind>:<id>" -> epoch ms)."""
    return f"mbr:{{{member_id}}}:changed"


# Contribution calls by date (sorted set: member number, score = the call's day, epoch s): a reminder a
# few days before (members/proactive.py).
CONTRIBUTION_CALLS = "mbr:contribution-calls"


def stats_counted(day: str, turn_id: str) -> str:
    """Set once one turn was counted in the day's figures (same slot as ``day_stats``: one script)."""
    return f"{PREFIX}:stats:{{{day}}}:counted:{turn_id}"


# Campaigns (campaigns/model.py owns them; the bot reads a member's contribution notice from them).
CAMPAIGNS_ALL = "camp:all"  # sorted set: campaign id, score = creation time (ms)


def campaign(campaign_id: str, part: str = "") -> str:
    """A campaign's hash (``def``, ``state``…) and its parts under one hash tag: ``r`` (member -> the
    record of the notice sent: channel, conversation and message ids, queued time), ``vars`` (member ->
    their row of the per-member file), ``due``, ``watch``…"""
    return f"camp:{{{campaign_id}}}" + (f":{part}" if part else "")
