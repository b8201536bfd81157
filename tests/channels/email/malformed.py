"""A corpus of hostile and malformed e-mails, built in code (NUL bytes, 8-bit headers, a 1 MB header
and hundreds of nested parts are easier to make than to keep as files).

Each case is what a careless or hostile sender could hand our SMTP listener; the test in
``test_malformed.py`` delivers every one over SMTP and checks the listener either stores it (text
sanitised) or refuses it with a clear reason, never crashes, never logs a traceback, never hangs.
"""

from __future__ import annotations

import base64
import random
from dataclasses import dataclass

HEAD = (
    b"From: Jeanne Martin <jeanne.martin@example.fr>\r\n"
    b"To: contact@mutuelle.example\r\n"
    b"Date: Mon, 23 Nov 2026 10:12:00 +0100\r\n"
)


@dataclass(frozen=True)
class Hostile:
    label: str
    raw: bytes
    envelope_from: str = "jeanne.martin@example.fr"
    # "stored", "refused" or "either": what a sensible listener must do with it.
    expect: str = "stored"


def _mail(label: str, headers: bytes, body: bytes, **kw: str) -> Hostile:
    mid = f"Message-ID: <{label}@example.fr>\r\n".encode()
    return Hostile(label, HEAD + mid + headers + b"\r\n" + body, **kw)


def _nested(depth: int) -> bytes:
    """``depth`` multipart/mixed levels, each with its own boundary, a text part at the bottom."""
    out = b"Content-Type: text/plain; charset=utf-8\r\n\r\nTout au fond.\r\n"
    for level in range(depth):
        b = f"n{level}".encode()
        out = (
            b'Content-Type: multipart/mixed; boundary="' + b + b'"\r\n\r\n'
            b"--" + b + b"\r\n" + out + b"\r\n--" + b + b"--\r\n"
        )
    return out


def _folded(name: bytes, size: int) -> bytes:
    """One header of about ``size`` bytes folded over lines of 76 characters (legal line lengths)."""
    word = b"abcdefghij" * 7 + b"klmno"
    lines = [name + b": " + word]
    total = len(lines[0])
    while total < size:
        lines.append(b" " + word)
        total += len(word) + 3
    return b"\r\n".join(lines) + b"\r\n"


def _lines(data: bytes, width: int = 900) -> bytes:
    return b"".join(data[i : i + width] + b"\r\n" for i in range(0, len(data), width))


def _b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def corpus(max_bytes: int) -> list[Hostile]:
    """Every hostile case; ``max_bytes`` is the listener's size limit (the near-limit body is sized on it)."""
    rng = random.Random(20261123)
    text = b"Content-Type: text/plain; charset=utf-8\r\n"
    cases = [
        # Multipart structure ----------------------------------------------------------------------
        _mail(
            "boundary-missing",
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n",
            b"--x\r\nContent-Type: text/plain\r\n\r\nSans frontiere.\r\n--x--\r\n",
        ),
        _mail(
            "boundary-mismatch",
            b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="nope"\r\n',
            b"--other\r\nContent-Type: text/plain\r\n\r\nAutre frontiere.\r\n--other--\r\n",
        ),
        _mail(
            "boundary-empty",
            b'Content-Type: multipart/alternative; boundary=""\r\n',
            b"--\r\nContent-Type: text/plain\r\n\r\nVide.\r\n----\r\n",
        ),
        _mail(
            "boundary-duplicate-param",
            b'Content-Type: multipart/mixed; boundary="a1"; boundary="b2"\r\n',
            b"--a1\r\n" + text + b"\r\nPremier.\r\n--b2\r\n" + text + b"\r\nSecond.\r\n--a1--\r\n--b2--\r\n",
        ),
        _mail(
            "boundary-reused-by-child",
            b'Content-Type: multipart/mixed; boundary="same"\r\n',
            b'--same\r\nContent-Type: multipart/alternative; boundary="same"\r\n\r\n--same\r\n'
            + text
            + b"\r\nEnfant.\r\n--same--\r\n--same--\r\n",
        ),
        _mail(
            "boundary-line-too-long-for-mime",
            b'Content-Type: multipart/mixed; boundary="' + b"z" * 900 + b'"\r\n',
            b"--" + b"z" * 900 + b"\r\n" + text + b"\r\nLongue frontiere.\r\n--" + b"z" * 900 + b"--\r\n",
        ),
        _mail(
            "unterminated-part",
            b'Content-Type: multipart/mixed; boundary="u"\r\n',
            b"--u\r\n" + text + b"\r\nDebut\r\n--u\r\nContent-Type: application/pdf\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJ",
        ),
        _mail("no-parts-at-all", b'Content-Type: multipart/mixed; boundary="p"\r\n', b"Rien ici.\r\n"),
        _mail("content-type-garbage", b'Content-Type: ;;;=== /// "\r\n', b"Texte.\r\n"),
        _mail("multipart-without-slash", b"Content-Type: multipart\r\n", b"Texte.\r\n"),
        Hostile("deep-nesting-300", HEAD + b"Message-ID: <dn300@example.fr>\r\nMIME-Version: 1.0\r\n" + _nested(300)),
        Hostile("deep-nesting-1500", HEAD + b"Message-ID: <dn1500@example.fr>\r\n" + _nested(1500), expect="refused"),
        _mail(
            "message-rfc822-broken-inner",
            b'Content-Type: multipart/mixed; boundary="r"\r\n',
            b"--r\r\nContent-Type: message/rfc822\r\n\r\nFrom: \x00\r\nContent-Type: multipart/mixed\r\n"
            b"\r\n--\r\n--r--\r\n",
        ),
        _mail(
            "report-with-garbage-status",
            b'Content-Type: multipart/report; report-type=delivery-status; boundary="d"\r\n',
            b"--d\r\nContent-Type: message/delivery-status\r\n\r\n\x00\xff:::\r\n\r\nAction: failed\r\n"
            b"--d\r\nContent-Type: message/rfc822\r\n\r\nMessage-ID: <x@elsewhere.example\r\n--d--\r\n",
        ),
        # Charsets ----------------------------------------------------------------------------------------
        _mail("charset-unknown", b"Content-Type: text/plain; charset=x-unknown\r\n", b"Bonjour caf\xc3\xa9.\r\n"),
        _mail(
            "charset-utf8-invalid-bytes",
            text + b"Content-Transfer-Encoding: 8bit\r\n",
            b"Valide \xc3\xa9 puis invalide \xff\xfe\xc3( \xed\xa0\x80 fin.\r\n",
        ),
        _mail(
            "charset-mislabelled-1252",
            text + b"Content-Transfer-Encoding: 8bit\r\n",
            b"R\xe9clamation \x96 \x80 d\xfb.\r\n",
        ),
        _mail("charset-in-encoded-word-unknown", b"Subject: =?x-klingon?q?Qapla=27?=\r\n", b"Texte.\r\n"),
        _mail("charset-utf7", b"Content-Type: text/plain; charset=utf-7\r\n", b"Hi +AGEAYgBj- +ZeVnLIqe-\r\n"),
        _mail(
            "charset-utf16-odd-bytes",
            b"Content-Type: text/plain; charset=utf-16\r\n",
            b"\xff\xfeB\x00o\x00n\x00j\x00\r\n",
        ),
        # Size and count --------------------------------------------------------------------------------
        _mail("header-1mb-folded", _folded(b"Subject", 1_000_000), b"Sujet immense.\r\n", expect="refused"),
        _mail("header-200kb-folded", _folded(b"Subject", 200_000), b"Sujet long.\r\n"),
        _mail(
            "header-1mb-single-line", b"X-Long: " + b"a" * 1_000_000 + b"\r\n", b"Ligne immense.\r\n", expect="refused"
        ),
        _mail("headers-5000", b"".join(b"X-Filler-%d: valeur\r\n" % i for i in range(5000)), b"Beaucoup.\r\n"),
        _mail(
            "received-3000",
            b"".join(b"Received: from relay%d.example by x; Mon, 23 Nov 2026\r\n" % i for i in range(3000)),
            b"Relais.\r\n",
        ),
        _mail(
            "references-5000",
            b"References:" + b"".join(b" <r%d@example.fr>\r\n" % i for i in range(5000)),
            b"Fil enorme.\r\n",
        ),
        _mail(
            "to-cc-5000", b"Cc:" + b",\r\n".join(b" u%d@example.fr" % i for i in range(5000)) + b"\r\n", b"Copie.\r\n"
        ),
        # NUL and control characters -------------------------------------------------------------------
        _mail("nul-in-headers", b"Subject: avant\x00apres\r\nX-Nul: \x00\x00\r\n", b"Corps.\r\n"),
        _mail("nul-in-body", text, b"Avant\x00\x00Apres\x00\r\n" + (b"\x00" * 900 + b"\r\n") * 3),
        _mail("control-chars-in-body", text, b"Bip\x07 \x1b[31mrouge\x1b[0m \x08\x0b\x0c fin\r\n"),
        _mail("bare-cr-and-lf", text, b"un\rdeux\nTrois\r\rquatre\n\n\r\n"),
        _mail("header-without-colon", b"Ceci n'est pas un en-tete\r\nSubject: ok\r\n", b"Corps.\r\n"),
        # Transfer encodings ---------------------------------------------------------------------------
        _mail("base64-broken", text + b"Content-Transfer-Encoding: base64\r\n", b"SGVsbG8g!!!$$$***d29y\r\nbGQ\r\n"),
        _mail("base64-bad-padding", text + b"Content-Transfer-Encoding: base64\r\n", b"Qm9uam91cg===\r\n=\r\n"),
        _mail(
            "qp-broken",
            text + b"Content-Transfer-Encoding: quoted-printable\r\n",
            b"Caf=C3=A9 =ZZ =\r\n=3 =\r\nfin=\r\n",
        ),
        _mail("cte-unknown", text + b"Content-Transfer-Encoding: x-rot13\r\n", b"Obawbhe.\r\n"),
        # RFC 2047 encoded words ---------------------------------------------------------------------
        _mail("encoded-word-bad-base64", b"Subject: =?utf-8?b?!!!not*base64?=\r\n", b"Texte.\r\n"),
        _mail("encoded-word-invalid-utf8", b"Subject: =?utf-8?q?=FF=FE=C3?= suite\r\n", b"Texte.\r\n"),
        _mail("encoded-word-unterminated", b"Subject: =?utf-8?q?R=C3=A9clamation\r\n", b"Texte.\r\n"),
        _mail(
            "encoded-word-header-injection",
            b"Subject: =?utf-8?q?Bonjour=0D=0ABcc=3A_victime=40example=2Efr=0D=0A?=\r\n"
            b"From: =?utf-8?q?Pirate=0D=0ATo=3A_x=40y?= <jeanne.martin@example.fr>\r\n",
            b"Injection.\r\n",
        ),
        _mail("encoded-word-nul", b"Subject: =?utf-8?q?a=00b?=\r\n", b"Texte.\r\n"),
        _mail("encoded-word-bad-encoding-letter", b"Subject: =?utf-8?x?abc?=\r\n", b"Texte.\r\n"),
        _mail(
            "encoded-words-2000",
            b"Subject:" + b"".join(b" =?utf-8?q?=C3=A9t=C3=A9?=\r\n" for _ in range(2000)),
            b"Texte.\r\n",
        ),
        # Missing headers --------------------------------------------------------------------------------
        Hostile("missing-from-msgid-date", b"To: contact@mutuelle.example\r\nSubject: Rien\r\n\r\nQui suis-je ?\r\n"),
        Hostile("missing-all-headers", b"\r\nJuste un corps.\r\n"),
        Hostile("empty-data", b""),
        Hostile("from-garbage", b'From: <<<@@@>>> ,,, "\r\nMessage-ID: <fg@example.fr>\r\n\r\nx\r\n'),
        Hostile("message-id-garbage", HEAD + b"Message-ID: <" + b"\x01<>" * 300 + b">\r\n\r\nx\r\n"),
        # HTML ------------------------------------------------------------------------------------------
        _mail(
            "html-only-scripts",
            b"Content-Type: text/html; charset=utf-8\r\n",
            b"<html><head><style>p{color:red}</style><script>alert('x')</script></head><body "
            b'onload="steal()"><p>Bonjour <img src=x onerror=alert(1)> <a href="javascript:evil()">ici</a>'
            b'</p><iframe src="http://evil.example"></iframe><script>document.cookie</script></body></html>\r\n',
        ),
        _mail("html-unclosed-tags-10000", b"Content-Type: text/html\r\n", (b"<div>" * 150 + b"\r\n") * 70 + b"fin\r\n"),
        _mail("html-unterminated-start-tags", b"Content-Type: text/html\r\n", (b"<a x='" * 150 + b"\r\n") * 200),
        _mail("html-comment-bomb", b"Content-Type: text/html\r\n", (b"<!--" * 200 + b"\r\n") * 100 + b"x\r\n"),
        # Attachments with hostile names ------------------------------------------------------------
        _mail(
            "attachment-path-traversal",
            b'Content-Type: multipart/mixed; boundary="f"\r\n',
            b"--f\r\n" + text + b"\r\nPiece jointe.\r\n--f\r\nContent-Type: application/octet-stream\r\n"
            b'Content-Disposition: attachment; filename="../../../../etc/passwd"\r\n\r\nroot\r\n'
            b'--f\r\nContent-Disposition: attachment; filename="C:\\\\Windows\\\\system32\\\\x.dll"\r\n\r\nMZ\r\n'
            b"--f--\r\n",
        ),
        _mail(
            "attachment-name-very-long",
            b'Content-Type: multipart/mixed; boundary="f"\r\n',
            b"--f\r\nContent-Disposition: attachment;\r\n"
            + b"".join(b' filename*%d="%s";\r\n' % (i, b"a" * 60) for i in range(300))
            + b"\r\ncontenu\r\n--f--\r\n",
        ),
        _mail(
            "attachment-name-control-chars",
            b'Content-Type: multipart/mixed; boundary="f"\r\n',
            b'--f\r\nContent-Disposition: attachment; filename="a\x07b\x1b[2Jc\x00d\x7f.pdf"\r\n\r\nx\r\n'
            b"--f\r\nContent-Disposition: attachment; filename*=utf-8''%0D%0Aevil%00%2F..%2Fx.exe\r\n\r\nx\r\n"
            b"--f\r\nContent-Disposition: attachment; filename*=x-bad''%FF%FE\r\n\r\nx\r\n--f--\r\n",
        ),
        _mail(
            "attachments-500",
            b'Content-Type: multipart/mixed; boundary="f"\r\n',
            b"".join(b'--f\r\nContent-Disposition: attachment; filename="p%d.txt"\r\n\r\nx\r\n' % i for i in range(500))
            + b"--f--\r\n",
        ),
        # Compressible bodies near the limit ------------------------------------------------------
        _mail(
            "near-limit-compressible-base64",
            b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n",
            _b64(b"<p>" + b"A" * int(max_bytes * 0.70) + b"</p>"),
        ),
        _mail("near-limit-compressible-plain", text, (b"a" * 900 + b"\r\n") * int(max_bytes * 0.95 / 902)),
        _mail("over-limit", text, (b"a" * 900 + b"\r\n") * int(max_bytes * 1.05 / 902), expect="refused"),
        # 8-bit headers ---------------------------------------------------------------------------------
        _mail(
            "8bit-utf8-headers",
            "Subject: Réclamation remboursée €\r\n".encode(),
            b"Texte.\r\n",
            envelope_from="jeanne.martin@example.fr",
        ),
        Hostile(
            "8bit-latin1-from-and-subject",
            b"From: Ren\xe9 M\xfcller <ren\xe9@exampl\xe9.fr>\r\nSubject: R\xe9clamation\r\n"
            b"Message-ID: <l1@example.fr>\r\n\r\nTexte.\r\n",
            envelope_from="rene@example.fr",
        ),
        _mail("8bit-header-names", b"X-\xe9t\xe9: valeur\r\n\xff\xfe: rien\r\n", b"Texte.\r\n"),
        # Pure garbage -------------------------------------------------------------------------------
        Hostile("random-bytes-64k", b"\r\n".join(bytes(rng.getrandbits(8) for _ in range(512)) for _ in range(128))),
    ]
    return cases
