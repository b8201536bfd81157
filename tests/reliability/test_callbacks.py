"""Providers' status callbacks arrive out of order and more than once: a status never goes backwards."""

from __future__ import annotations

from tests.reliability.conftest import report
from tests.reliability.rig import Rig
from tests.reliability.scenarios import callbacks_shuffled


async def test_shuffled_duplicated_callbacks_leave_each_message_at_its_last_status(rig: Rig) -> None:
    fig = report(await callbacks_shuffled(rig, n=20, copies=2))
    assert fig.sent == 20 * 2 * 3 and fig.answers_5xx == 0
    assert fig.notes["went backwards"] == 0 and fig.stored == 20
