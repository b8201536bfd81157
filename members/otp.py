"""One-time codes: drawn from the operating system's CSPRNG, kept as digests bound to their
conversation, never in clear.

Standard library only: the gateway (which draws and sends codes) and the bot's actions (which
check them, in the bot's own virtualenv, ``bot/actions/state.py``) share this one definition.

The digest is a plain SHA-256 of ``conversation:code``, not an HMAC: whoever can read it can read
Redis, which holds the member records the code protects, and the code lives 10 minutes and takes
three tries. A key shared by the gateway and the action server would need a secret handed to both
processes outside Redis, which the embedded set-up does not have.
"""

from __future__ import annotations

import hashlib
import secrets

CODE_DIGITS = 6


def new_code() -> str:
    """A code of ``CODE_DIGITS`` digits, uniform over all of them (leading zeros kept)."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def otp_digest(conv_id: str, code: str) -> str:
    return hashlib.sha256(f"{conv_id}:{code}".encode()).hexdigest()
