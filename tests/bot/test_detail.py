"""« DETAIL » and the daily figures of status questions (bot/actions/detail.py), on a real Redis: the word
in its forms, the detail given once per turn to the verified member, a later question forgetting it, and
each question classed once: after a message about the same record, on a record changed without one."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.actions import detail, understand
from gateway import keys
from members.records import Claim, MemberStore

NUMBER = "M0500001"


class Said:
    def __init__(self) -> None:
        self.texts: list[str] = []

    def utter_message(self, text: str | None = None, **kwargs: Any) -> None:
        self.texts.append(str(text))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("DETAIL", True), ("détail", True), ("Détail.", True), ("le détail svp", True), ("Le détail, s'il vous plaît !", True),
     ("details", True), ("je veux le détail de mon remboursement", False), ("détaillez", False), ("", False)],
)  # fmt: skip
def test_detail_is_the_word_alone_in_any_case_with_or_without_accent_or_svp(text: str, expected: bool) -> None:
    assert understand.detail_request(text) is expected
    assert detail.asked({"text": text}) is expected
    assert detail.asked({"text": "/give_identity", "metadata": {"detail": True}})


async def test_the_detail_of_the_last_message_is_given_once_per_turn_and_forgotten_by_another_question(
    redis: Redis,
) -> None:
    claim = Claim("CL0500001", NUMBER, "2026-11-02", "pharmacie", "80.00", "57.42", "paid", "2026-12-05", True)
    async with redis.pipeline(transaction=False) as pipe:
        MemberStore(redis).write_record(pipe, claim)
        await pipe.execute()
    await redis.set(keys.member_last_notice(NUMBER), json.dumps({"records": ["claims:CL0500001"]}))
    conv = {"channel": "sms"}
    said = Said()
    today = dt.date(2026, 12, 7)
    assert not await detail.answer(redis, "conv-1", NUMBER, conv, said, today, "t1")  # DETAIL never asked
    await detail.note(redis, "conv-1", {"text": "/give_identity", "metadata": {"detail": True}})
    assert await detail.answer(redis, "conv-1", NUMBER, conv, said, today, "t2")
    assert await detail.answer(redis, "conv-1", NUMBER, conv, said, today, "t2")  # a retried action: the same
    assert not await detail.answer(redis, "conv-1", NUMBER, conv, said, today, "t3")  # a later turn: not again
    assert (
        said.texts
        == ["Votre remboursement pharmacie du 02/11/2026 (80,00 €) est payé : 57,42 €, versé le 05/12/2026."] * 2
    )
    audit = await redis.xrange(keys.member_audit(NUMBER))
    assert [(e["what"], e["records"]) for _, e in audit] == [("detail", '["claims:CL0500001"]')]
    # « DETAIL », then another question before verifying: that question is the one answered.
    await detail.note(redis, "conv-2", {"text": "DETAIL"})
    await detail.note(redis, "conv-2", {"text": "où en est ma carte ?"})
    assert not await detail.answer(redis, "conv-2", NUMBER, conv, said, today, "t4")


async def test_status_questions_are_classed_after_a_message_or_on_a_record_changed_without_one(redis: Redis) -> None:
    now_ms = int(time.time() * 1000)
    await redis.hset(keys.member_notices(NUMBER), mapping={"claims:TOLD": now_ms - 3600_000,
                                                           "claims:OLD": now_ms - 8 * 24 * 3600_000})  # fmt: skip
    await redis.hset(keys.member_changes(NUMBER), mapping={"claims:TOLD": now_ms, "claims:UNTOLD": now_ms})
    assert await detail.count_question(redis, "t1", NUMBER, "claim", ["TOLD"]) == "after_notice"
    assert await detail.count_question(redis, "t1", NUMBER, "claim", ["TOLD"]) == "after_notice"  # counted once
    assert await detail.count_question(redis, "t2", NUMBER, "claim", ["UNTOLD"]) == "changed_untold"
    assert await detail.count_question(redis, "t3", NUMBER, "claim", ["OLD"]) == ""  # told 8 days ago
    assert await detail.count_question(redis, "t3", NUMBER, "card", []) == ""  # another question of the same turn
    stats = await redis.hgetall(keys.day_stats(detail.paris_day()))
    assert (stats["status_questions"], stats["status_after_notice"], stats["status_changed_untold"]) == ("4", "1", "1")
