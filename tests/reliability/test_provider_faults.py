"""Providers fail in every way they do in production: each message is still sent once, or recorded
failed with the provider's reason; Retry-After is honoured."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.reliability.conftest import report
from tests.reliability.rig import Rig, open_rig
from tests.reliability.scenarios import email_faults, sms_faults, telegram_faults


@pytest.fixture
async def impatient(tmp_path: Path) -> AsyncIterator[Rig]:
    """Sends time out after 2 s (a provider answering in 4 s is a timeout), short back-off."""
    async with open_rig(tmp_path, SEND_TIMEOUT_S="2", SEND_BACKOFF_BASE_S="0.2", SEND_BACKOFF_MAX_S="1") as r:
        yield r


async def test_twilio_faults_each_member_answered_once_and_refusals_recorded(impatient: Rig) -> None:
    fig = report(await sms_faults(impatient, members=8, retry_after=2.0))
    assert (fig.replies, fig.lost, fig.duplicated, fig.answers_5xx) == (7, 0, 0, 0)
    assert fig.notes["waited after 429 (s)"] >= 2.0
    assert str(fig.notes["refused recorded"]).startswith("21610 ")


async def test_telegram_faults_each_chat_answered_and_a_block_recorded(impatient: Rig) -> None:
    fig = report(await telegram_faults(impatient, chats=8))
    assert fig.answers_5xx == 0 and fig.notes["failed for good"] == 1
    assert fig.lost == 0  # the chat whose bot was blocked is recorded failed; no other went unanswered
    assert fig.duplicated <= fig.faults["late answer"]  # at-least-once: only an answer we never got repeats


async def test_smtp_faults_retried_or_recorded_and_a_late_answer_resent_with_the_same_id(impatient: Rig) -> None:
    fig = report(await email_faults(impatient, senders=6))
    assert fig.notes["our smtp answers"] == "250" and fig.notes["failed for good"] == 1
    assert fig.lost == 0  # the one refused with 550 is recorded failed
    assert fig.duplicated <= 1 and fig.notes["copies with another Message-ID"] == 0
