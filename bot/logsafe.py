"""Run the Rasa server or the action server with logs that never hold a member's words.

Rasa 3.6 quotes whole messages in some of its records: a message typed like ``/intent{...}`` whose
entities are not in the domain (a ``UserWarning`` printed to stderr, with the line), an intent or an
entity the domain does not know (their names are the member's words), an exception while handling a
message (with its text), and at DEBUG every tracker. Its ``LOG_LEVEL`` is also read from the
environment, which ``run.py serve`` shares with the gateway.

``python bot/logsafe.py rasa ARGS…`` (or ``rasa_sdk ARGS…``) is the launcher ``bot/manage.py`` uses: before
Rasa or the SDK imports anything, it

- sets the level: ``BOT_LOG_LEVEL`` (default ``INFO``; ``WARNING`` and ``ERROR`` quieter); anything lower
  is raised to ``INFO``, whatever ``LOG_LEVEL`` says;
- installs a record factory (``logging.setLogRecordFactory``), so every record of every logger, whatever
  handler Rasa, Sanic or structlog attach later, goes through ``sanitise``: a message is kept only if it
  is one of the known safe ones (start-up, model loading, an action server that cannot be reached);
  any other is replaced by where it was logged (logger, file and line, structlog's event key) and an
  exception by its type and frames, never its message;
- routes ``warnings`` through logging (``logging.captureWarnings``), so Rasa's warnings are records too.

Standard library only: it runs in the bot's virtualenv and is tested from the gateway's.
"""

from __future__ import annotations

import json
import logging
import os
import re
import runpy
import sys
import traceback
from types import TracebackType
from typing import Any

LEVELS = {"INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR}
WITHHELD = "message withheld (it may quote a member's words)"

# Messages kept as they are. Every variable part is narrow: a URL or path of ours, an action or form name
# of the domain (lower case and underscores), a registered function, a process id.
_NAME = r"'[a-z][a-z_]*'"
_SAFE = [
    re.compile(p)
    for p in (
        r"Starting Rasa server on https?://[\w.:-]+",
        r"Rasa server is up and running\.",
        r"Loading model [\w./-]+\.\.\.",
        r"Starting plugins\.\.\.",
        r"Starting action endpoint server\.\.\.",
        r"Action endpoint is up and running on https?://[\w.:-]+",
        rf"Registered function for {_NAME}\.",
        rf"Failed to run custom action {_NAME}\. Couldn't connect to the server at 'https?://[\w.:/-]+'\. "
        r"Is the server running\? Error: [\w .:\[\]\-/]+",
        rf"Encountered an exception while running action {_NAME}\.Bot will continue, but the actions events "
        r"are lost\. Please check the logs of your action server for more information\.",
        r"Goin' Fast @ https?://[\w.:-]+",
        r"(Starting|Stopping) worker \[\d+\]",
        r"Server Stopped",
        r"Killing Sanic server \.\.\.|Received signal SIG[A-Z]+\. Shutting down\.",
    )
]


def _where(record: logging.LogRecord) -> str:
    return f"{os.path.basename(record.pathname)}:{record.lineno}"


def _event_key(message: str) -> str:
    """structlog's event key (« rest.message.received »): a constant of Rasa's code, never the member's."""
    try:
        event = json.loads(message).get("event")
    except (ValueError, AttributeError):
        return ""
    return event if isinstance(event, str) and re.fullmatch(r"[a-z0-9_.]{1,80}", event) else ""


def _frames(tb: TracebackType | None) -> str:
    return " <- ".join(f"{os.path.basename(f.filename)}:{f.lineno} {f.name}" for f in traceback.extract_tb(tb)[::-1])


def sanitise(record: logging.LogRecord) -> logging.LogRecord:
    """Keep a known safe message; otherwise keep where it was logged and withhold what it says."""
    try:
        message = record.getMessage()
    except Exception:  # a record whose arguments do not format is withheld like any other
        message = ""
    safe = record.exc_info is None and any(p.fullmatch(message) for p in _SAFE)
    if not safe:
        text = WITHHELD
        key = _event_key(message)
        if key:
            text += f" event={key}"
        # A warning is told by its category and the code that raised it (« io.py:100 UserWarning »).
        raised = re.match(r"(\S+\.py):(\d+): (\w+):", message) if record.name == "py.warnings" else None
        if raised:
            text += f" {raised.group(3)} at {os.path.basename(raised.group(1))}:{raised.group(2)}"
        else:
            text += f" at {_where(record)}"
        if record.exc_info and record.exc_info[0] is not None:
            text += f"; exception {record.exc_info[0].__name__}: {_frames(record.exc_info[2])}"
        record.msg, record.args = text, None
        record.exc_info, record.exc_text, record.stack_info = None, None, None
    return record


def install(level_name: str | None = None) -> int:
    """The record factory, warnings through logging, and the level; returns the level."""
    level = LEVELS.get((level_name or os.environ.get("BOT_LOG_LEVEL") or "INFO").upper(), logging.INFO)
    previous = logging.getLogRecordFactory()
    if not getattr(previous, "sanitising", False):

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            return sanitise(previous(*args, **kwargs))

        factory.sanitising = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(factory)
    logging.captureWarnings(True)
    # Rasa and the SDK read their level from here (Rasa from LOG_LEVEL, which the gateway may set to DEBUG).
    os.environ["LOG_LEVEL"] = logging.getLevelName(level)
    logging.getLogger().setLevel(level)
    return level


def main(argv: list[str]) -> None:
    """``logsafe.py rasa ARGS…`` or ``logsafe.py rasa_sdk ARGS…``: the program, with ``install`` first."""
    if not argv or argv[0] not in ("rasa", "rasa_sdk"):
        raise SystemExit("usage: logsafe.py rasa|rasa_sdk ARGS…")
    level = install()
    args = list(argv[1:])
    if argv[0] == "rasa_sdk" and level > logging.INFO:
        args.append("--quiet")
    sys.argv = [argv[0], *args]
    runpy.run_module("rasa" if argv[0] == "rasa" else "rasa_sdk", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
