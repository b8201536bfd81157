"""Providers deliver again when they are not sure we got it: each message is stored and answered once."""

from __future__ import annotations

from tests.reliability.conftest import report
from tests.reliability.rig import Rig
from tests.reliability.scenarios import redelivery


async def test_every_inbound_delivery_replayed_3_and_10_times_is_stored_and_answered_once(rig: Rig) -> None:
    fig = report(await redelivery(rig, copies=(3, 10), spread_s=5.0))
    assert fig.unique == 6 and fig.sent == 3 * (3 + 10)
    assert (fig.stored, fig.replies, fig.lost, fig.duplicated, fig.answers_5xx) == (6, 6, 0, 0, 0)
