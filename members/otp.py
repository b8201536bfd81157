"""One-time codes: drawn from the operating system's CSPRNG, kept only as keyed digests bound to
their conversation, never in clear.

Standard library only: the gateway (which draws and sends codes) and the bot's actions (which
check them, in the bot's own virtualenv, ``bot/actions/state.py``) share this one definition.

The digest is an HMAC-SHA-256 of ``conversation:code`` under a key derived from the server secret
(``SECRET_KEY``): whoever reads Redis (a dump, a replica, a backup) cannot try the million codes
against it. The key never leaves the gateway: the gateway digests the codes a member types
(``typed_digests``) and hands the digests to the bot with the message, and the bot compares them
with the stored one in constant time. The action server therefore needs no secret.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

CODE_DIGITS = 6
# Six digits as members type them: 482913, 482 913, 482-913, 48 29 13 (at most a separator between digits).
_TYPED = re.compile(r"(?<![0-9])[0-9](?:[ .\-]?[0-9]){5}(?![0-9])")
MAX_TYPED = 5


def new_code() -> str:
    """A code of ``CODE_DIGITS`` digits, uniform over all of them (leading zeros kept)."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def otp_key(secret: str) -> bytes:
    """The codes' key, derived from the server secret (the secret itself signs other things)."""
    return hmac.new(secret.encode(), b"one-time-codes/v1", hashlib.sha256).digest()


def otp_digest(key: bytes, conv_id: str, code: str) -> str:
    return hmac.new(key, f"{conv_id}:{code}".encode(), hashlib.sha256).hexdigest()


def typed_codes(text: str) -> list[str]:
    """The codes a message may hold (six digits, maybe split by a space, dot or dash), at most
    ``MAX_TYPED`` of them."""
    found: list[str] = []
    for match in _TYPED.finditer(text or ""):
        code = re.sub(r"[^0-9]", "", match.group())
        if code not in found:
            found.append(code)
    return found[:MAX_TYPED]


def typed_digests(key: bytes, conv_id: str, text: str) -> list[str]:
    return [otp_digest(key, conv_id, code) for code in typed_codes(text)]
