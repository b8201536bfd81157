"""Oversized input is refused at the door with the protocol's own answer; nothing else is affected."""

from __future__ import annotations

from tests.reliability.conftest import report
from tests.reliability.rig import Rig
from tests.reliability.scenarios import size_limits


async def test_oversized_bodies_mails_and_frames_are_refused_and_nothing_else_affected(rig: Rig) -> None:
    fig = report(await size_limits(rig, body_limit=256 * 1024, email_limit=10 * 1024 * 1024))
    assert fig.notes["sms webhook"] == fig.notes["telegram webhook"] == fig.notes["callback api"] == 413
    assert fig.notes["smtp data"] == 552
    assert fig.notes["webchat frame"] == 1009
    assert (fig.replies, fig.lost) == (1, 0)
