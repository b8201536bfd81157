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
MAX_TEXT = 50_000  # characters of text kept (a 24,340-character line fits whole)

_MSGID = re.compile(r"<([^<>\s]+)>")
# Where the previous message starts in a reply or forward, French and English clients. An attribution
# line ("Le … a écrit :", Gmail, Apple Mail, Thunderbird) is followed by ">" quoted lines: only those are
# dropped, so a member writing under the quote (bottom-posting) or between its lines keeps their words.
_ATTRIBUTIONS = [
    re.compile(r"^\s*Le .{4,200}a écrit\s*:\s*$", re.IGNORECASE),
    re.compile(r"^\s*On .{4,200}wrote\s*:\s*$", re.IGNORECASE),
]
# "Jeanne Martin a écrit :" (older Thunderbird): an attribution only when quoted lines follow it.
_LOOSE_ATTRIBUTIONS = [re.compile(r"^\s*\S.{0,150}(a écrit|wrote)\s*:\s*$", re.IGNORECASE)]
# A separator line that opens the previous message (Outlook, Thunderbird, Gmail, Apple Mail).
_REPLY_MARKER = re.compile(r"^\s*-{2,}\s*(Message d'origine|Original Message)\s*-{2,}\s*$", re.IGNORECASE)
_FORWARD_MARKER = re.compile(
    r"^\s*(-{2,}\s*(Forwarded message|Message transféré|Forwarded Message|Message réexpédié)\s*-{2,}"
    r"|Début du message (réexpédié|transféré)\s*:|Begin forwarded message\s*:)\s*$",
    re.IGNORECASE,
)
# Outlook's header block: "De : …" then "Envoyé : …" / "Date : …" / "À : …" / "Objet : …" lines.
_BLOCK_FROM = re.compile(r"^\s*\*?(De|From)\s*\*?\s*:\s*\S", re.IGNORECASE)
_BLOCK_NEXT = re.compile(r"^\s*\*?(Envoyé|Sent|Date|À|A|To|Objet|Subject|Cc|Pour)\s*\*?\s*:", re.IGNORECASE)
_RULE = re.compile(r"^\s*(_{8,}|-{8,}|={8,})\s*$")  # the line Outlook draws above its header block
_FORWARD_SUBJECT = re.compile(r"^\s*(\[?(tr|fwd?|wg|trans)\s*:)", re.IGNORECASE)
FORWARD_HEADING = "---------- Message transféré ----------"
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
# Challenge-response systems (Bluebottle, Boxbe, Spam Arrest, TMDA...) ask a robot question of every sender.
_CHALLENGE_PREFIXES = ("x-bluebottle", "x-boxbe", "x-spamarrest", "x-spam-arrest", "x-tmda", "x-challenge")
# Abuse complaints that are not ARF reports (those are multipart/report, caught as reports).
_ABUSE_SENDERS = re.compile(r"^(abuse|spamcop|spam-?report|fbl|feedback-?loop|complaints?)([+.-][^@]*)?@", re.I)
_ABUSE_SUBJECTS = re.compile(
    r"^\s*(\[spamcop|abuse (report|complaint|notification)|spam (report|complaint)|report of abuse|"
    r"(rapport|signalement|plainte) (d'|pour )?(abus|spam)|complaint about (unsolicited|spam))",
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
    names = [str(k).strip().lower() for k in msg.keys()]
    if any(n.startswith("list-") or n in ("mailing-list", "x-mailing-list") for n in names):
        return "mailing-list"  # RFC 2369 / 2919 List-* headers, ezmlm's Mailing-List
    if any(_header_value(v).lower().startswith("mailing list") for v in _all(msg, "Delivered-To")):
        return "mailing-list"  # ezmlm and qmail lists: "Delivered-To: mailing list x@y"
    if any(n.startswith(_CHALLENGE_PREFIXES) for n in names) or "tmda" in _header(msg, "X-Delivery-Agent").lower():
        return "challenge-response"
    if _spam_flagged(msg):
        return "spam-flagged"
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
    if _ABUSE_SENDERS.match(sender) or _ABUSE_SUBJECTS.match(subject):
        return "abuse-complaint"
    if own_domain and replies_to_us(msg, own_domain):
        if suppress:
            return "reply-to-ours:x-auto-response-suppress"
        if _AUTO_WORDS.search(subject) or _AUTO_WORDS.search(text[:600]):
            return "reply-to-ours:auto-wording"
    return None


def _all(msg: EmailMessage, name: str) -> list[str]:
    """Every value of a header, decoded; [] when absent or unreadable."""
    try:
        return [str(v) for v in msg.get_all(name) or []]
    except Exception:
        return []


def _header_value(value: str) -> str:
    return one_line(value, 2000)


def _spam_flagged(msg: EmailMessage) -> bool:
    """SpamAssassin's (and Rspamd's) verdict written by the MX: ``X-Spam-Flag: YES``, ``X-Spam-Status: Yes, …``.
    A sender who writes it themselves only silences their own mail."""
    if any(v.strip().lower().startswith("yes") for v in _all(msg, "X-Spam-Flag")):
        return True
    return any(re.match(r"\s*yes\b", v, re.IGNORECASE) for v in _all(msg, "X-Spam-Status"))


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


def _attribution_at(lines: list[str], i: int) -> int:
    """How many lines (1 or 2: Gmail wraps long ones) the attribution starting at ``i`` takes, 0 if none.
    Strict patterns ("Le … a écrit :") always count; loose ones ("Jeanne a écrit :") only before a quote."""
    for width in (1, 2):
        if i + width > len(lines):
            break
        candidate = " ".join(line.strip() for line in lines[i : i + width])
        if not lines[i].strip() or (width == 2 and not lines[i + 1].strip()):
            break
        if any(p.match(candidate) for p in _ATTRIBUTIONS):
            return width
        if any(p.match(candidate) for p in _LOOSE_ATTRIBUTIONS) and _quote_follows(lines, i + width):
            return width
    return 0


def _quote_follows(lines: list[str], i: int) -> bool:
    """Whether the next non-blank line from ``i`` is a ">" quoted line."""
    for line in lines[i : i + 3]:
        if line.strip():
            return line.lstrip().startswith(">")
    return False


def _header_block_at(lines: list[str], i: int) -> bool:
    """An Outlook-style header block ("De : …" then "Envoyé : …", "À : …", "Objet : …") starts at ``i``."""
    if not _BLOCK_FROM.match(lines[i]):
        return False
    following = [line for line in lines[i + 1 : i + 4] if line.strip()][:2]
    return bool(following) and all(_BLOCK_NEXT.match(line) for line in following)


def _tidy(lines: list[str]) -> str:
    out = "\n".join(line.rstrip() for line in lines).strip()
    return re.sub(r"\n{3,}", "\n\n", out)


def own_words(text: str, subject: str = "") -> tuple[str, bool]:
    """What the member wrote, and whether the mail forwards another one.

    Dropped: ">" quoted lines and the attribution line above them (wherever the member wrote:
    above, below or between the quoted lines), the member's signature ("-- "), and, for a reply,
    everything from a quoted header block or "Original Message" separator on (Outlook quotes the
    previous message unmarked below them). Kept: a forward's content after the member's own words,
    under one "Message transféré" heading, with the forwarded headers (who wrote it, when)."""
    lines = clean_text(text).split("\n")
    forward_subject = bool(_FORWARD_SUBJECT.match(subject))
    kept: list[str] = []
    in_signature = False
    i = 0
    while i < len(lines):
        line = lines[i]
        block_at = i + 1 if _RULE.match(line) and i + 1 < len(lines) and _header_block_at(lines, i + 1) else i
        if _FORWARD_MARKER.match(line) or (
            forward_subject and (_REPLY_MARKER.match(line) or _header_block_at(lines, block_at))
        ):
            start = i + 1 if not _header_block_at(lines, block_at) else block_at
            forwarded = _tidy(lines[start:])
            own = _tidy(kept)
            if not forwarded:
                return own[:MAX_TEXT], False
            joined = f"{own}\n\n{FORWARD_HEADING}\n{forwarded}" if own else f"{FORWARD_HEADING}\n{forwarded}"
            return joined[:MAX_TEXT], True
        if _REPLY_MARKER.match(line) or _header_block_at(lines, block_at):
            break  # Outlook: the previous message follows, unmarked
        width = _attribution_at(lines, i)
        if width:
            if not _quote_follows(lines, i + width):
                break  # an attribution with nothing quoted under it: the previous message follows as is
            i += width
            continue
        if line.lstrip().startswith(">"):
            in_signature = False  # a quote after the signature: the member may write again below it
            i += 1
            continue
        if line.rstrip() == "--":
            in_signature = True
        if not in_signature:
            kept.append(line)
        i += 1
    return _tidy(kept)[:MAX_TEXT], False


def strip_quote(text: str) -> str:
    """Keep what the member wrote: drop the quoted previous message and the signature."""
    return own_words(text)[0]


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


def attached_messages(msg: EmailMessage) -> list[EmailMessage]:
    """The mails attached whole (``message/rfc822``: "forward as attachment"), at most five, one level."""
    out: list[EmailMessage] = []
    try:
        parts = list(msg.iter_attachments()) if msg.is_multipart() else []
    except Exception:
        return []
    for part in parts[:50]:
        if part.get_content_type() != "message/rfc822":
            continue
        inner = part.get_payload()
        first = inner[0] if isinstance(inner, list) and inner else None
        if isinstance(first, EmailMessage):
            out.append(first)
        if len(out) >= 5:
            break
    return out


def forwarded_text(inner: EmailMessage) -> str:
    """An attached mail as agents and the bot read it: who wrote it, when, its subject, then its text."""
    heads = [
        f"{label} : {one_line(_header(inner, name))}"
        for label, name in (("De", "From"), ("Date", "Date"), ("Objet", "Subject"))
        if _header(inner, name)
    ]
    body = _tidy(clean_text(body_text(inner)).split("\n"))
    return "\n".join([FORWARD_HEADING, *heads, "", body]).strip()


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


@dataclass(frozen=True, slots=True)
class AuthResult:
    """One method's result in an Authentication-Results header: ``dmarc=pass header.from=example.fr``."""

    method: str
    result: str
    props: dict[str, str]


def _uncomment(value: str) -> str:
    """The value without RFC 5322 comments (parenthesised, possibly nested)."""
    for _ in range(5):
        stripped = re.sub(r"\([^()]*\)", " ", value)
        if stripped == value:
            break
        value = stripped
    return value


def authentication_results(msg: EmailMessage, authserv_id: str) -> list[AuthResult] | None:
    """The results written by the MX whose authserv-id is ``authserv_id`` (RFC 8601), None when no
    Authentication-Results header carries it. Headers with any other id are ignored: anyone can write one."""
    found = False
    out: list[AuthResult] = []
    for value in _all(msg, "Authentication-Results")[:50]:
        parts = _uncomment(one_line(value, 4000)).split(";")
        head = parts[0].split()
        if not head or head[0].strip().lower().rstrip(".") != authserv_id:
            continue
        found = True
        for resinfo in parts[1:]:
            tokens = resinfo.split()
            if not tokens or "=" not in tokens[0]:
                continue  # "none": no results
            method, _, result = tokens[0].partition("=")
            props: dict[str, str] = {}
            for token in tokens[1:]:
                name, eq, val = token.partition("=")
                if eq and "." in name:
                    props[name.lower()] = val.strip('"').lower()
            out.append(AuthResult(method.split("/")[0].lower(), result.lower(), props))
    return out if found else None


def _domain_of(value: str) -> str:
    return value.rpartition("@")[2].strip().strip("<>").rstrip(".").lower()


def _aligned(a: str, b: str) -> bool:
    """Relaxed DMARC alignment, without the public-suffix list: the same domain, or one a subdomain of
    the other. Stricter than DMARC for sister subdomains (a.example.fr / b.example.fr): such mail is
    then not proven, so stored for agents and not answered, never the other way round."""
    return bool(a and b) and (a == b or a.endswith("." + b) or b.endswith("." + a))


def sender_verdict(msg: EmailMessage, sender: str, authserv_id: str) -> tuple[bool, str]:
    """Whether the MX proved that ``sender`` (the From address we answer and link) wrote this mail, and why.

    Proven: every DMARC result the MX wrote for this From domain is ``pass``; or, where it wrote none
    (or ``dmarc=none``: the domain publishes no policy), an SPF pass on an aligned envelope domain or a
    DKIM pass on an aligned signing domain."""
    domain = _domain_of(sender)
    if sender == "unknown@invalid" or not domain:
        return False, "no-sender"
    if len([a for _, a in getaddresses(_all(msg, "From")) if a]) > 1:
        return False, "several-from"
    results = authentication_results(msg, authserv_id)
    if results is None:
        return False, "no-authentication-results"
    dmarc = [r for r in results if r.method == "dmarc" and r.result != "none"  # none: the domain publishes no policy
             and _aligned(r.props.get("header.from", domain), domain)]  # fmt: skip
    if dmarc:
        worst = next((r.result for r in dmarc if r.result != "pass"), "pass")
        return worst == "pass", f"dmarc={worst}"[:40]
    for r in results:
        if r.result != "pass":
            continue
        if r.method == "spf" and _aligned(_domain_of(r.props.get("smtp.mailfrom", "")), domain):
            return True, "spf=pass-aligned"
        if r.method == "dkim" and _aligned(_domain_of(r.props.get("header.d") or r.props.get("header.i", "")), domain):
            return True, "dkim=pass-aligned"
    return False, "no-aligned-pass"


def parse_email(
    raw: bytes, envelope_from: str | None = None, own_domain: str | None = None, authserv_id: str = ""
) -> Message:
    """Our envelope for one received e-mail; ``own_domain`` is the domain of our Message-IDs, so a
    mail answering one of ours is looked at more closely for signs of an auto-responder.

    With ``authserv_id`` (``EMAIL_AUTHSERV_ID``, lower case), the sender is proven or not by that MX's
    Authentication-Results (``Message.sender_authentic``); a mail not proven is stored for the agents,
    never answered, and never linked to the member whose address it shows. Without it,
    ``sender_authentic`` stays None: the From address is taken as it is."""
    msg: EmailMessage = email.message_from_bytes(raw, policy=email.policy.default)
    sender = _sender(msg, envelope_from)
    subject = one_line(_header(msg, "Subject"))
    ids = message_ids(_header(msg, "Message-ID"))
    message_id = ids[0] if ids else None
    external = message_id or "sha256:" + hashlib.sha256(raw).hexdigest()
    in_reply_to = message_ids(_header(msg, "In-Reply-To"))
    references = message_ids(_header(msg, "References"))
    text, forwarded = own_words(body_text(msg), subject)
    reason = automated_reason(msg, sender, envelope_from, own_domain, text)
    authentic: bool | None = None
    auth_reason = ""
    files = list(attachments(msg))
    if reason is None:  # a report's attached original is no forward: only a person's mail is unfolded
        for inner in attached_messages(msg):
            text = f"{text}\n\n{forwarded_text(inner)}".strip()[:MAX_TEXT]
            files.extend(attachments(inner)[:50])
            forwarded = True
    if authserv_id:
        authentic, auth_reason = sender_verdict(msg, sender, authserv_id)
        if not authentic and reason is None:
            reason = f"unauthenticated:{auth_reason}"
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
    if forwarded:
        meta["forwarded"] = True
    if auth_reason:
        meta["sender_auth"] = auth_reason
    return inbound(
        CHANNEL,
        f"mailto:{sender}",
        text,
        external,
        attachments=tuple(files[:100]),
        meta=meta,
        automated=reason is not None,
        sender_authentic=authentic,
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
