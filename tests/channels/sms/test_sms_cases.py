"""The table of Twilio webhook cases (cases.json), played through the real handlers.

Payloads follow Twilio's documented incoming-message and status-callback parameters,
with French fake data (numbers from ARCEP's range reserved for fiction, 06 39 98 xx xx).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from gateway import keys
from tests.channels.sms.sms_harness import Harness, subset

CASES: list[dict[str, Any]] = json.loads((Path(__file__).parent / "cases.json").read_text(encoding="utf-8"))


def twiml_reply(body: str) -> str | None:
    root = ET.fromstring(body)
    assert root.tag == "Response"
    messages = root.findall("Message")
    assert len(messages) <= 1
    return messages[0].text if messages else None


@pytest.mark.parametrize("case", CASES, ids=[c["label"] for c in CASES])
async def test_case(sms: Harness, case: dict[str, Any]) -> None:
    expected = case["expected"]
    before = case.get("before") or {}
    if before.get("opted_out"):
        for urn in expected.get("opt_out", {}):
            await sms.redis.sadd(keys.opt_out("sms"), urn)

    status, body, content_type = await sms.post(case["path"], case["body"], headers=case["headers"])

    assert status == expected["status"], body
    if status == 200:
        assert content_type == "text/xml"
        assert twiml_reply(body) == expected.get("reply")

    if "messages" in expected:
        accepted = await sms.accepted()
        assert len(accepted) == len(expected["messages"])
        for msg, want in zip(accepted, expected["messages"], strict=True):
            assert msg.channel == "sms" and msg.direction == "in"
            got = asdict(msg)
            got["attachments"] = [asdict(a) for a in msg.attachments]
            assert subset(got, want), f"{got} does not contain {want}"

    if "statuses" in expected:
        got_statuses = [asdict(u) for u in await sms.statuses()]
        assert got_statuses == [{"channel": "sms", "ref": None, **u} for u in expected["statuses"]]

    for urn, opted_out in expected.get("opt_out", {}).items():
        assert await sms.opted_out(urn) is opted_out, urn


def test_table_covers_what_the_issue_asks() -> None:
    labels = " | ".join(c["label"] for c in CASES).lower()
    for needle in ("plain sms", "mms", "emoji", "stop", "arret", "missing from", "garbage", "messaging service"):
        assert needle in labels
