"""redis-server killed with SIGKILL mid-stream: nothing acknowledged is lost, nothing is sent twice,
and the product carries on by itself."""

from __future__ import annotations

from tests.reliability.conftest import report
from tests.reliability.rig import Rig
from tests.reliability.scenarios import redis_crash


async def test_redis_killed_mid_stream_loses_nothing_acknowledged(rig: Rig) -> None:
    fig = report(await redis_crash(rig, messages=120, per_s=30.0))
    assert fig.faults["redis SIGKILL"] == 1
    assert (fig.stored, fig.replies, fig.lost, fig.duplicated) == (120, 120, 0, 0)
    assert fig.notes["back after (s)"] != "-"  # it did recover, by itself
