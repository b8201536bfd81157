"""The Rasa server's and the action server's records as ``bot/logsafe.py`` leaves them: where they were
logged, never what a member typed (the whole processes are tested in tests/e2e/test_no_disclosure.py)."""

from __future__ import annotations

import logging
import os
import sys

import pytest

from bot import logsafe


def record(msg: str, *args: object, name: str = "rasa.core.processor", exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise KeyError("M0100002 06 12 34 56 78")
        except KeyError:
            exc_info = sys.exc_info()
    made = logging.LogRecord(name, logging.WARNING, "/x/rasa/core/processor.py", 1034, msg, args or None, exc_info)
    return logsafe.sanitise(made)


def test_member_words_are_withheld_and_the_place_is_kept() -> None:
    hostile = (
        'Failed to parse arguments in line \'/greet{"x":"M0100002"}\'. Continuing without entities.',
        "Interpreter parsed an intent 'M0100002' which is not defined in the domain.",
        "Parsed an entity 'CANARI' which is not defined in the domain.",
        '{"event": "rest.message.received", "text": "06 12 34 56 78"}',
    )
    for msg in hostile:
        out = record(msg).getMessage()
        assert "M0100002" not in out and "06 12" not in out and "CANARI" not in out
        assert out.startswith(logsafe.WITHHELD) and out.endswith("processor.py:1034")
    assert "event=rest.message.received" in record(hostile[-1]).getMessage()
    assert record("user said %s", "M0100002").getMessage().startswith(logsafe.WITHHELD)


def test_an_exception_keeps_its_type_and_frames_not_its_message() -> None:
    out = record("An exception occured while handling user message 'M0100002'.", exc=True)
    assert out.exc_info is None and out.exc_text is None
    text = out.getMessage()
    assert "exception KeyError: test_logsafe.py:" in text and "M0100002" not in text


def test_a_warning_names_its_category_and_code() -> None:
    msg = '/v/rasa/shared/utils/io.py:100: UserWarning: Failed to parse arguments in line \'/inform{"m":"M0100002"}\''
    text = record(msg, name="py.warnings").getMessage()
    assert text == f"{logsafe.WITHHELD} UserWarning at io.py:100"


def test_known_messages_are_kept() -> None:
    for msg in (
        "Starting Rasa server on http://127.0.0.1:5005",
        "Rasa server is up and running.",
        "Registered function for 'validate_identity_form'.",
        "Action endpoint is up and running on http://127.0.0.1:5055",
        "Failed to run custom action 'action_start_query'. Couldn't connect to the server at "
        "'http://127.0.0.1:47741/webhook'. Is the server running? Error: Cannot connect to host "
        "127.0.0.1:47741 ssl:default [Connection refused]",
    ):
        assert record(msg).getMessage() == msg
    # A name that is not a domain's (digits, upper case: a member's words) is not a known message.
    assert record("Registered function for 'M0100002'.").getMessage().startswith(logsafe.WITHHELD)


def test_the_level_is_info_at_the_lowest(monkeypatch: pytest.MonkeyPatch) -> None:
    factory, root_level = logging.getLogRecordFactory(), logging.getLogger().level
    try:
        monkeypatch.setenv("LOG_LEVEL", "DEBUG")
        monkeypatch.setenv("BOT_LOG_LEVEL", "DEBUG")
        assert logsafe.install() == logging.INFO
        assert os.environ["LOG_LEVEL"] == "INFO"
        assert logsafe.install("warning") == logging.WARNING
        made = logging.getLogRecordFactory()("rasa", logging.ERROR, "p.py", 1, "text %s", ("M0100002",), None)
        assert "M0100002" not in made.getMessage()
    finally:
        logging.setLogRecordFactory(factory)
        logging.getLogger().setLevel(root_level)
        logging.captureWarnings(False)
