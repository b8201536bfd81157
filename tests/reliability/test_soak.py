"""Mixed traffic at a steady rate: nothing lost or duplicated, and no process's memory keeps growing
(the long form, 30 minutes, is bench/chaos.py's soak)."""

from __future__ import annotations

from tests.reliability.conftest import report
from tests.reliability.rig import Rig
from tests.reliability.scenarios import soak


async def test_a_short_soak_loses_nothing_and_memory_stays_flat(rig: Rig) -> None:
    fig = report(await soak(rig, seconds=40.0, per_s=10.0, warmup_s=10.0))
    assert fig.sent >= 350 and fig.answers_5xx == 0
    assert (fig.lost, fig.duplicated) == (0, 0)
    assert fig.stored == fig.sent
    assert fig.notes["largest growth MB"] < 40, fig.notes["memory MB (start → end)"]
