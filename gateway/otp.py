"""One-time codes are kept as digests bound to their conversation, never in clear.

Standard library only: the gateway (which draws and sends codes) and the bot's actions (which
check them, in the bot's own virtualenv) share this one definition.
"""

from __future__ import annotations

import hashlib


def otp_digest(conv_id: str, code: str) -> str:
    return hashlib.sha256(f"{conv_id}:{code}".encode()).hexdigest()
