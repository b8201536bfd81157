"""One sender writing 50 messages a second is stored, told once to slow down, and does not slow
other members' replies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.reliability.conftest import report
from tests.reliability.rig import Rig, open_rig
from tests.reliability.scenarios import flood_isolation


@pytest.fixture
async def unthrottled(tmp_path: Path) -> AsyncIterator[Rig]:
    """Twilio's rate (10 SMS/s) would make every reply wait its turn: the product's own latency is measured."""
    async with open_rig(tmp_path, SMS_RATE_PER_S="1000") as r:
        yield r


async def test_a_flooding_sender_is_contained(unthrottled: Rig) -> None:
    fig = report(await flood_isolation(unthrottled, members=60, per_member=10, flood_per_s=50.0))
    assert fig.lost == 0
    assert fig.stored == fig.faults["flood messages"]  # nothing of the flood is lost either
    assert fig.notes["told to slow down"] == 1  # and answered only at a person's pace until then
    assert fig.notes["answers to the flooder"] < fig.faults["flood messages"] / 10
    assert fig.notes["ratio"] <= 1.2, fig.row()
