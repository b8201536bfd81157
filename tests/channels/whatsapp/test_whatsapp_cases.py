"""The table of Twilio WhatsApp webhook cases (cases.json), played through the real handlers.

Payloads follow Twilio's documented incoming-message parameters for WhatsApp (``whatsapp:``
addresses, ``ProfileName``, ``WaId``, ``MessageType``, media, quick-reply buttons) and its status
callbacks (``ChannelPrefix``, ``read``, error 63016), with French fake data (06 39 98 xx xx).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from channels.whatsapp.inbound import open_window
from gateway import keys
from tests.channels.sms.sms_harness import subset
from tests.channels.sms.test_sms_cases import twiml_reply
from tests.channels.whatsapp.conftest import WaHarness

CASES: list[dict[str, Any]] = json.loads((Path(__file__).parent / "cases.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", CASES, ids=[c["label"] for c in CASES])
async def test_case(wa: WaHarness, case: dict[str, Any]) -> None:
    expected = case["expected"]
    before = case.get("before") or {}
    for urn in before.get("opted_out", []):
        await wa.redis.sadd(keys.opt_out("whatsapp"), urn)
    for urn in before.get("window", []):
        await open_window(wa.redis, urn)

    status, body, content_type = await wa.post(case["path"], case["body"], headers=case["headers"])

    assert status == expected["status"], body
    if status == 200:
        assert content_type == "text/xml"
        assert twiml_reply(body) == expected.get("reply")

    if "messages" in expected:
        accepted = await wa.accepted()
        assert len(accepted) == len(expected["messages"])
        for msg, want in zip(accepted, expected["messages"], strict=True):
            assert msg.channel == "whatsapp" and msg.direction == "in"
            got = asdict(msg)
            got["attachments"] = [asdict(a) for a in msg.attachments]
            assert subset(got, want), f"{got} does not contain {want}"

    if "statuses" in expected:
        got_statuses = [asdict(u) for u in await wa.statuses()]
        assert got_statuses == [{"channel": "whatsapp", "ref": None, **u} for u in expected["statuses"]]

    for urn, opted_out in expected.get("opt_out", {}).items():
        assert await wa.wa_opted_out(urn) is opted_out, urn
    for urn, opted_out in expected.get("sms_opt_out", {}).items():
        assert await wa.opted_out(urn) is opted_out, urn
    for urn, is_open in expected.get("window", {}).items():
        assert await wa.window_open(urn) is is_open, urn


def test_table_covers_what_the_issue_asks() -> None:
    labels = " | ".join(c["label"] for c in CASES).lower()
    for needle in ("profilename", "waid", "sms webhook", "image", "stop", "arrêt", "start", "read", "63016", "forged"):
        assert needle in labels, needle
