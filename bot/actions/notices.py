"""The advance notice of a contribution change a member was sent, as the campaigns recorded it.

The campaigns keep, per campaign, the record of each member's notice (``camp:{<id>}:r``: channel,
conversation and message ids, when it was queued or listed for post), the member's own figures
(``camp:{<id>}:vars``: the per-member file's row) and the campaign itself (``camp:{<id>}`` ``def``:
kind, effective date or the member field holding it, constant values). The message's hash holds when
it was sent. The bot reads them through the key schema (``gateway/keys.py``); it does not import the
campaigns.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from gateway import keys

PARIS = ZoneInfo("Europe/Paris")
LOOKED_AT = 200  # the newest campaigns searched for a member's notice
CHANNELS = {"email": "par e-mail", "sms": "par SMS", "whatsapp": "par WhatsApp", "courrier": "par courrier"}


def _day(ms: Any) -> str:
    try:
        return dt.datetime.fromtimestamp(int(ms) / 1000, PARIS).date().isoformat()
    except (TypeError, ValueError, OverflowError, OSError):
        return ""


async def contribution_notice(redis: Any, member: Mapping[str, Any]) -> dict[str, str] | None:
    """The newest contribution-change notice recorded for ``member``: ``sent`` (ISO date, "" while not
    sent yet), ``channel`` (« par e-mail »…), ``effective`` (ISO date), ``new`` (the new monthly amount, ""
    when the campaign did not give one), ``campaign``; None when the member was sent none."""
    number = str(member.get("number") or "")
    if not number:
        return None
    ids = [str(c) for c in await redis.zrevrange(keys.CAMPAIGNS_ALL, 0, LOOKED_AT - 1)]
    if not ids:
        return None
    async with redis.pipeline(transaction=False) as pipe:
        for cid in ids:
            pipe.hget(keys.campaign(cid, "r"), number)
        records = await pipe.execute()
    for cid, raw in zip(ids, records, strict=True):
        if not raw:
            continue
        definition = await redis.hget(keys.campaign(cid), "def")
        try:
            campaign, record = json.loads(definition or "{}"), json.loads(raw)
        except ValueError:
            continue
        if campaign.get("kind") != "contribution_change":
            continue
        effective = str(campaign.get("effective_date") or member.get(str(campaign.get("date_field") or "")) or "")
        sent, channel = "", ""
        if record.get("msg") and record.get("conv"):
            times = await redis.hmget(keys.message(record["conv"], record["msg"]), ["sent_ms", "delivered_ms"])
            sent = _day(next((t for t in times if t), None))  # a provider may report delivered only
            channel = CHANNELS.get(str(record.get("channel") or ""), "")
        elif record.get("postal_ms"):  # no digital channel reached the member: the back office posted it
            sent, channel = _day(record["postal_ms"]), CHANNELS["courrier"]
        own_raw = await redis.hget(keys.campaign(cid, "vars"), number)
        try:
            own = json.loads(own_raw) if own_raw else {}
        except ValueError:
            own = {}
        values = campaign.get("values") or {}
        new = str(own.get("new_contribution") or values.get("new_contribution") or "")
        return {"sent": sent, "channel": channel, "effective": effective, "new": new, "campaign": cid}
    return None
