"""JSON logs: one line per event, never message bodies, addresses masked, tokens redacted."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()) | {"message", "asctime"}
# Things that must never reach a log line even by accident.
_FORBIDDEN_KEYS = frozenset({"text", "body", "content", "password", "token", "secret", "auth_token"})
_BOT_TOKEN = re.compile(r"\b\d{6,}:[A-Za-z0-9_-]{30,}\b")
_PHONE = re.compile(r"\+?\d[\d .-]{8,}\d")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")


_URL_CREDENTIALS = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)
# The configured secrets' exact values (auth tokens, keys, passwords): whatever quotes them, they go.
_SECRETS: list[str] = []


def register_secrets(values: list[str]) -> None:
    """Values never to be written to a log line, however they get there (an exception, a URL)."""
    for value in values:
        if value and len(value) >= 6 and value not in _SECRETS:
            _SECRETS.append(value)
    _SECRETS.sort(key=len, reverse=True)


def scrub(value: str) -> str:
    for secret in _SECRETS:
        if secret in value:
            value = value.replace(secret, "<secret>")
    value = _URL_CREDENTIALS.sub(r"\1<credentials>@", value)
    value = _BOT_TOKEN.sub("<token>", value)
    value = _EMAIL.sub("<email>", value)
    return _PHONE.sub("<phone>", value)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": scrub(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key in _STANDARD or key.startswith("_"):
                continue
            if key in _FORBIDDEN_KEYS:
                value = "<redacted>"
            elif isinstance(value, str) and key not in ("urn", "msg_id", "channel"):
                value = scrub(value)
            out[key] = value
        if record.exc_info:
            exc_type, exc, _ = record.exc_info
            # Exception messages may quote input: keep the type and a scrubbed message.
            out["exc"] = f"{exc_type.__name__ if exc_type else 'Exception'}: {scrub(str(exc))[:300]}"
            out["trace"] = scrub(self.formatException(record.exc_info))[-4000:]
        return json.dumps(out, ensure_ascii=False, default=str)


def setup(level: str = "INFO", secrets: list[str] | None = None) -> None:
    register_secrets(secrets or [])
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Library loggers that could echo request contents at debug level stay at warning.
    for name in ("aiohttp.access", "httpx", "telegram", "twilio", "mail.log", "aiosmtpd"):
        logging.getLogger(name).setLevel(logging.WARNING)
