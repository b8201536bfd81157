"""One sender writing 50 messages a second is stored, told once to slow down, and does not slow
other members' replies."""

from __future__ import annotations

import pytest

from tests.reliability.conftest import report
from tests.reliability.rig import Rig
from tests.reliability.scenarios import flood_isolation


# 90 s measured, plus the warm-up and the rig: about 100 s here, more on a slower machine.
@pytest.mark.timeout(360)
async def test_a_flooding_sender_is_contained(rig: Rig) -> None:
    fig = report(await flood_isolation(rig, members=100, per_member=45, flood_per_s=50.0))
    assert fig.lost == 0
    assert fig.stored == fig.faults["flood messages"]  # nothing of the flood is lost either
    assert fig.notes["told to slow down"] == 1  # and answered only at a person's pace until then
    assert fig.notes["answers to the flooder"] < fig.faults["flood messages"] / 10
    # Others' reply p99 within 20 % of the same load without the flood. A p99 of a few milliseconds on a
    # shared 2-core machine moves by a millisecond between runs, so 90 s of traffic are measured (2,250
    # replies each way) and the test fails when the flood is shown to raise the p99 by more than 20 %:
    # when even the low end of the ratio's 90 % bootstrap interval is above 1.2. (Checked to fail, at
    # 1.40, with each flood message holding the worker's event loop for 5 ms.)
    assert fig.notes["ratio at least"] <= 1.2, fig.row()
