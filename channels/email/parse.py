"""Inbound e-mail parsing: raw RFC 5322 bytes -> our envelope. Pure, no I/O, never raises
on malformed mail (a message we cannot read is still stored, with what could be read).

Everything taken from the mail is sanitised on the way in: control characters, NUL bytes and
undecodable bytes are dropped from the text, header values are kept on one line (a decoded
encoded-word cannot smuggle a CR/LF into our reply's headers), Message-IDs, addresses and
attachment names are checked or cleaned, and HTML goes through libxml2 (linear on any input)
before it is turned into text, since the standard library's HTML parser is quadratic on
unterminated tags. ``automated_reason`` says why a mail was written by a machine; such mail is
stored for agents and never answered (no mail loops).
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr
from typing import Any

import html2text
import lxml.etree
import lxml.html

from gateway.envelope import Attachment, Message, inbound

CHANNEL = "email"
MAX_TEXT = 20_000

_MSGID = re.compile(r"<([^<>\s]+)>")
# Lines that open the quoted previous message in replies (French and English clients).
_REPLY_HEADERS = [
    re.compile(r"^\s*Le .{4,120}a écrit\s*:\s*$", re.IGNORECASE),
    re.compile(r"^\s*On .{4,160}wrote\s*:\s*$", re.IGNORECASE),
    re.compile(
        r"^\s*-{2,}\s*(Message d'origine|Original Message|Message transféré|Forwarded message)\s*-{2,}", re.IGNORECASE
    ),
    re.compile(r"^\s*(De|From)\s*:\s.+$", re.IGNORECASE),
]
# Subjects of auto-replies, out-of-office notices, bounces and read receipts (French and English
# clients: Outlook, Gmail, Thunderbird, Exchange, Postfix), matched at the start of the subject.
_AUTO_SUBJECTS = re.compile(
    r"^\s*(r[ée]ponse automatique|absence\s*([-:–(]|$|du bureau|jusqu)|absent(e)? du bureau|"
    r"je suis absent(e)?\b|out of (the )?office|automatic reply|auto[- ]?reply|autoreply|auto[- ]?response|"
    r"away from (the )?office|vacation (reply|notice)|undeliverable|undelivered mail|"
    r"delivery status notification|mail delivery (failed|failure|system)|returned mail|"
    r"non remis|non distribuable|[ée]chec de (la )?(remise|distribution)|"
    r"accus[ée] de (r[ée]ception|lecture)|read\s*:|lu\s*:|read receipt|return receipt|"
    r"notification de lecture)",
    re.IGNORECASE,
)
_ROBOT_SENDERS = re.compile(
    r"^(mailer-daemon|postmaster|no-?reply|do-?not-?reply|ne-?pas-?repondre|bounces?|auto-?reply|autoresponder)"
    r"([+.-][^@]*)?@",
    re.IGNORECASE,
)
# Markers Microsoft Exchange / Outlook put on mail its rules and out-of-office assistant generate.
_EXCHANGE_MARKERS = ("X-MS-Exchange-Inbox-Rules-Loop", "X-MS-Exchange-Generated-Message-Source")
# Weaker signs, enough only for a mail that answers one of ours: what an auto-responder writes.
_AUTO_WORDS = re.compile(
    r"r[ée]ponse automatique|message automatique|message g[ée]n[ée]r[ée] automatiquement|ne pas r[ée]pondre|"
    r"je suis (actuellement )?absent|absent(e)? du bureau|de retour le|en cong[ée]s|out of (the )?office|"
    r"automatic reply|auto-?reply|automated (message|response|reply)|autoresponder|do not reply|"
    r"this is an automatic|i am (currently )?(out|away)|on vacation|on leave",
    re.IGNORECASE,
)
# Characters never kept in stored text: C0 controls but tab and newline, DEL, C1 controls, lone
# surrogates (undecodable bytes), and the non-characters U+FFFE/U+FFFF.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_LINE_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]+")
_MSGID_OK = re.compile(r"[\x21-\x3b\x3d\x3f-\x7e]{1,250}")  # printable ASCII but < and >
_ADDRESS_OK = re.compile(r"[^\s@<>()\[\],;:\\\"]{1,64}@[^\s@<>()\[\],;:\\\"]{1,190}")
MAX_HEADER_BYTES = 256 * 1024  # of the header section; a larger one is refused (parsing it costs seconds)
MAX_HTML = 256 * 1024  # of normalised HTML turned into text (the text kept is MAX_TEXT anyway)
MAX_PLAIN = 1024 * 1024  # of a text part read before quotes are stripped


def header_size(raw: bytes) -> int:
    """The size of a raw mail's header section (all of it when no blank line ends it)."""
    ends = [i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0]
    return min(ends) if ends else len(raw)


def clean_text(text: str) -> str:
    """Text safe to store and show: line ends normalised, control and undecodable characters dropped."""
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def one_line(value: str, limit: int = 300) -> str:
    """A header value on one line (CR, LF and other controls become spaces), trimmed to ``limit``."""
    return " ".join(_LINE_CONTROL.sub(" ", value).split())[:limit]


def _header(msg: EmailMessage, name: str) -> str:
    """A header's decoded value, "" when absent or so broken that the parser gives up on it."""
    try:
        value = msg.get(name)
        return "" if value is None else str(value)
    except Exception:  # the header parser has many failure modes on hostile input
        return ""


def message_ids(value: str | None) -> list[str]:
    """The well-formed ids in a Message-ID, In-Reply-To or References value (printable ASCII only)."""
    return [m for m in _MSGID.findall(value or "") if _MSGID_OK.fullmatch(m)]


def address_ok(address: str) -> bool:
    return bool(_ADDRESS_OK.fullmatch(address)) and "\ufffd" not in address and len(address) <= 254


def safe_filename(name: str | None) -> str | None:
    """An attachment's name as shown to agents: its last path component, without control characters,
    leading dots or spaces, at most 200 characters (keeping the extension); None when nothing is left."""
    if not name:
        return None
    base = re.split(r"[/\\]", _LINE_CONTROL.sub("", str(name)))[-1].strip().lstrip(".").strip()
    if len(base) > 200:
        stem, dot, ext = base.rpartition(".")
        base = f"{stem[:190]}.{ext[:9]}" if dot and len(ext) <= 9 else base[:200]
    return base or None


def replies_to_us(msg: EmailMessage, own_domain: str) -> bool:
    """Whether this mail answers one of ours: one of its In-Reply-To or References ids is in our domain."""
    suffix = f"@{own_domain.lower()}"
    refs = message_ids(_header(msg, "In-Reply-To")) + message_ids(_header(msg, "References"))
    return any(r.lower().endswith(suffix) for r in refs)


def automated_reason(
    msg: EmailMessage, sender: str, envelope_from: str | None, own_domain: str | None = None, text: str = ""
) -> str | None:
    """Why this mail was written by a machine (never to be answered), or None.

    Decisive signs: the headers of RFC 3834 and RFC 2369, of Microsoft Exchange and of common
    auto-responders, a delivery or read report, a null sender, a robot's address, an auto-reply's
    subject. Weaker signs (auto-responder wording in the subject or the first lines, a request to
    suppress auto-responses) count only for a mail that answers one of ours (``own_domain``): the
    shape of a loop between our auto-replies and someone else's."""
    auto = _header(msg, "Auto-Submitted").strip().lower()
    if auto and auto != "no":
        return f"auto-submitted:{auto.split(';')[0].strip()[:40]}"
    precedence = _header(msg, "Precedence").strip().lower()
    if precedence in ("bulk", "junk", "list", "auto_reply"):
        return f"precedence:{precedence}"
    for header in ("X-Autoreply", "X-Autorespond", "X-Autorespond-Sent", "X-Autogenerated", "X-Auto-Reply"):
        value = _header(msg, header).strip().lower()
        if value and value not in ("no", "false", "0"):
            return header.lower()
    suppress = _header(msg, "X-Auto-Response-Suppress").strip().lower()
    if suppress and any(v.strip() in ("all", "oof", "autoreply") for v in suppress.split(",")):
        return "x-auto-response-suppress"
    for header in _EXCHANGE_MARKERS:
        if _header(msg, header).strip():
            return header.lower()
    if msg.get("List-Id") is not None or msg.get("List-Unsubscribe") is not None or msg.get("List-Post") is not None:
        return "mailing-list"
    if msg.get_content_type() == "multipart/report":
        report = str(msg.get_param("report-type") or "unknown")
        return f"report:{one_line(report, 40)}"
    if any(p.get_content_type() in ("message/disposition-notification", "message/delivery-status")
           for p in _shallow_parts(msg)):  # fmt: skip
        return "report:embedded"
    if envelope_from is not None and envelope_from.strip() in ("", "<>"):
        return "null-sender"
    if _header(msg, "Return-Path").strip().replace(" ", "") == "<>":
        return "null-return-path"
    if _ROBOT_SENDERS.match(sender):
        return "robot-sender"
    subject = one_line(_header(msg, "Subject"))
    if _AUTO_SUBJECTS.match(subject):
        return "auto-subject"
    if own_domain and replies_to_us(msg, own_domain):
        if suppress:
            return "reply-to-ours:x-auto-response-suppress"
        if _AUTO_WORDS.search(subject) or _AUTO_WORDS.search(text[:600]):
            return "reply-to-ours:auto-wording"
    return None


def _shallow_parts(msg: EmailMessage) -> list[EmailMessage]:
    """The first two levels of parts (a report wrapped once, as some gateways do); never deep."""
    if not msg.is_multipart():
        return []
    out: list[EmailMessage] = []
    for part in list(msg.iter_parts())[:20]:
        out.append(part)  # type: ignore[arg-type]
        if part.is_multipart():
            out.extend(list(part.iter_parts())[:20])  # type: ignore[arg-type]
    return out


def _decode_part(part: EmailMessage) -> str:
    try:
        content = part.get_content()
        return content if isinstance(content, str) else ""
    except Exception:  # unknown charset or transfer encoding, broken base64, odd content type...
        try:
            payload = part.get_payload(decode=True)
        except Exception:
            return ""
        if isinstance(payload, bytes):
            return payload.decode("utf-8", errors="replace")
        return str(payload or "")


def html_to_text(html: str) -> str:
    """The readable text of an HTML body, without scripts, styles or comments.

    libxml2 first reads any HTML, however broken, in linear time and writes it back well-formed;
    html2text then lays out the text (paragraphs, lists) from that."""
    html = html.replace("\x00", "")
    if not html.strip():
        return ""
    try:
        doc = lxml.html.document_fromstring(html)
    except (lxml.etree.ParserError, ValueError):  # nothing but markup, or no document at all
        return ""
    for node in doc.xpath("//script|//style|//head|//noscript|//template|//comment()|//processing-instruction()"):
        parent = node.getparent()
        if parent is not None:
            if node.tail:  # the text after a removed node stays
                prev = node.getprevious()
                if prev is not None:
                    prev.tail = (prev.tail or "") + node.tail
                else:
                    parent.text = (parent.text or "") + node.tail
            parent.remove(node)
    clean = lxml.html.tostring(doc, encoding="unicode")[:MAX_HTML]
    conv = html2text.HTML2Text()
    conv.ignore_images = True
    conv.ignore_emphasis = True
    conv.ignore_links = True
    conv.body_width = 0
    return str(conv.handle(clean)).strip()


def body_text(msg: EmailMessage) -> str:
    part = None
    try:
        part = msg.get_body(preferencelist=("plain", "html"))
    except Exception:
        part = None
    if part is None:
        if msg.is_multipart():
            return ""
        part = msg
    text = _decode_part(part)  # type: ignore[arg-type]
    if part.get_content_type() == "text/html":
        return html_to_text(text)
    return text[:MAX_PLAIN]


def strip_quote(text: str) -> str:
    """Keep what the member wrote: drop the quoted previous message and the signature."""
    kept: list[str] = []
    for line in clean_text(text).split("\n"):
        if line.rstrip() == "--" or line == "-- ":
            break
        if any(p.match(line) for p in _REPLY_HEADERS):
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line.rstrip())
    out = "\n".join(kept).strip()
    return re.sub(r"\n{3,}", "\n\n", out)[:MAX_TEXT]


def attachments(msg: EmailMessage) -> tuple[Attachment, ...]:
    out: list[Attachment] = []
    try:
        parts = list(msg.iter_attachments()) if msg.is_multipart() else []
    except Exception:
        parts = []
    for part in parts[:50]:
        try:
            payload = part.get_payload(decode=True)
        except Exception:
            payload = None
        try:
            filename = part.get_filename()
        except Exception:
            filename = None
        out.append(
            Attachment(
                filename=safe_filename(filename),
                content_type=one_line(part.get_content_type(), 100),
                size=len(payload) if isinstance(payload, bytes) else None,
            )
        )
    return tuple(out)


def reply_subject(subject: str) -> str:
    base = re.sub(r"^\s*((re|tr|fwd?)\s*:\s*)+", "", subject, flags=re.IGNORECASE).strip()
    return f"Re: {base}" if base else "Re: votre message"


def _sender(msg: EmailMessage, envelope_from: str | None) -> str:
    """The From address, else the envelope sender, else ``unknown@invalid`` (lower case, checked)."""
    for value in (_header(msg, "From"), envelope_from or ""):
        address = parseaddr(value)[1].strip().lower()
        if address_ok(address):
            return address
    return "unknown@invalid"


def parse_email(raw: bytes, envelope_from: str | None = None, own_domain: str | None = None) -> Message:
    """Our envelope for one received e-mail; ``own_domain`` is the domain of our Message-IDs, so a
    mail answering one of ours is looked at more closely for signs of an auto-responder."""
    msg: EmailMessage = email.message_from_bytes(raw, policy=email.policy.default)
    sender = _sender(msg, envelope_from)
    subject = one_line(_header(msg, "Subject"))
    ids = message_ids(_header(msg, "Message-ID"))
    message_id = ids[0] if ids else None
    external = message_id or "sha256:" + hashlib.sha256(raw).hexdigest()
    in_reply_to = message_ids(_header(msg, "In-Reply-To"))
    references = message_ids(_header(msg, "References"))
    text = strip_quote(body_text(msg))
    reason = automated_reason(msg, sender, envelope_from, own_domain, text)
    refs_for_reply = [*references, *([message_id] if message_id else [])]
    meta: dict[str, Any] = {
        "subject": subject,
        "message_id": message_id,
        "in_reply_to": in_reply_to[:1],
        "references": references[-20:],
        "thread_refs": list(dict.fromkeys(in_reply_to + references))[-20:],
        "reply": {
            "subject": reply_subject(subject)[:300],
            "in_reply_to": message_id,
            "references": refs_for_reply[-20:],
        },
        "cc": [a for _, a in getaddresses([_header(msg, "Cc")])[:200] if address_ok(a)][:20],
    }
    if reason:
        meta["automated_reason"] = reason
    return inbound(
        CHANNEL,
        f"mailto:{sender}",
        text,
        external,
        attachments=attachments(msg),
        meta=meta,
        automated=reason is not None,
    )


@dataclass(frozen=True, slots=True)
class Bounce:
    """A permanent delivery failure reported by a delivery status notification (RFC 3464)."""

    original_id: str  # the Message-ID of the mail that failed, without <>
    status: str  # the enhanced status code, "5.1.1"
    diagnostic: str


def bounces(raw: bytes) -> list[Bounce]:
    """The recipients a DSN reports as failed, with the Message-ID of the original mail; [] for any
    other mail, a delay warning, or a report too damaged to read (then it is kept as a message)."""
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        if msg.get_content_type() != "multipart/report":
            return []
        original = ""
        failed: list[tuple[str, str]] = []
        for part in msg.walk():
            ctype = part.get_content_type()
            if ctype == "message/delivery-status":
                for block in part.get_payload():
                    if isinstance(block, EmailMessage) and str(block.get("Action", "")).strip().lower() == "failed":
                        status = str(block.get("Status", "")).strip()[:20]
                        diagnostic = " ".join(str(block.get("Diagnostic-Code", "")).split())[:300]
                        failed.append((status, diagnostic))
            elif ctype == "message/rfc822" and not original:
                inner = part.get_payload()
                first = inner[0] if isinstance(inner, list) and inner else None
                if isinstance(first, EmailMessage):
                    original = next(iter(message_ids(str(first.get("Message-ID", "")))), "")
            elif ctype in ("text/rfc822-headers", "message/rfc822-headers") and not original:
                headers = email.message_from_string(_decode_part(part), policy=email.policy.default)
                original = next(iter(message_ids(str(headers.get("Message-ID", "")))), "")
        if not original:
            original = next(iter(message_ids(str(msg.get("In-Reply-To", "")))), "")
        return [Bounce(original, status, diagnostic) for status, diagnostic in failed] if original else []
    except Exception:  # hostile or broken reports must not stop the listener
        return []
