"""Anonymous web-chat session tokens: a random session id signed with the gateway's secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

_SEP = "."


def _mac(secret: str, session_id: str) -> str:
    digest = hmac.new(secret.encode(), f"webchat:{session_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode().rstrip("=")


def issue_token(secret: str) -> tuple[str, str]:
    """A new (session id, token) pair."""
    session_id = secrets.token_urlsafe(18)
    return session_id, f"{session_id}{_SEP}{_mac(secret, session_id)}"


def verify_token(secret: str, token: str) -> str | None:
    """The session id of a genuine token, else None (compared in constant time)."""
    if not token or len(token) > 200 or _SEP not in token:
        return None
    session_id, _, mac = token.partition(_SEP)
    if not session_id or not hmac.compare_digest(mac.encode(), _mac(secret, session_id).encode()):
        return None
    return session_id
