"""SIGKILL anywhere (supervisor, web, worker, redis-server) while messages flow and a campaign sends:
after the restarts, every message is answered once and every member notified once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.reliability.conftest import report
from tests.reliability.rig import Rig, open_rig
from tests.reliability.scenarios import kill_anywhere


@pytest.fixture
async def fast(tmp_path: Path) -> AsyncIterator[Rig]:
    env = {"EMAIL_RATE_PER_S": "1000", "SMS_RATE_PER_S": "1000", "CAMPAIGN_RECLAIM_S": "5"}
    async with open_rig(tmp_path, **env) as r:
        yield r


@pytest.mark.timeout(600)
async def test_random_kills_lose_nothing_and_send_nothing_twice(fast: Rig) -> None:
    fig = report(await kill_anywhere(fast, kills=6, inbound=300, recipients=2000))
    assert sum(fig.faults.values()) == 6
    assert (fig.lost, fig.duplicated) == (0, 0), fig.notes["kill points"]
    assert fig.stored == fig.unique == 300 + (0 if "campaign" in fig.notes else 2000)
