"""Each member's own figures: resolved from the record, the per-member file and computed changes;
checked before a campaign is counted or scheduled (missing values, bounds), the refusals naming the
members; and every notice sent with its member's own figures, on a real Redis."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from redis.asyncio import Redis

from campaigns.engine import Campaigns
from campaigns.model import CampaignError, from_input, key, parse_member_file
from campaigns.variables import Findings, age_band, needed, parse_amount, resolve
from gateway.contacts import Contacts
from gateway.conversations import Conversations
from gateway.responders import AckResponder
from gateway.router import Router
from gateway.streams import Streams
from tests.campaigns.test_engine import TUESDAY_10AM, load, member, notices

RECORD = {"number": "M0000001", "contribution_eur": "176.20", "cover_level": "confort", "birth_date": "1975-03-12"}
ON = dt.date(2027, 3, 1)


def test_figures_come_from_the_record_the_file_and_are_computed() -> None:
    got = resolve({"new_contribution": "67.10", "change_percent": "3.2", "phone": "09 70"}, RECORD,
                  {"new_contribution": "181,84 €"}, ON)  # fmt: skip
    assert got["current_contribution"] == "176.20" and got["cover_level"] == "confort"
    assert got["age_band"] == "50–59 ans" and got["phone"] == "09 70"
    assert got["new_contribution"] == "181.84"  # the file wins over the campaign's one amount for all
    assert (got["change_eur"], got["change_percent"]) == (Decimal("5.64"), Decimal("3.2"))
    down = resolve({}, RECORD, {"new_contribution": "71,20"}, ON)
    assert (down["change_eur"], down["change_percent"]) == (Decimal("-105.00"), Decimal("-59.6"))
    typed = resolve({"change_percent": "3.2", "change_eur": "1"}, RECORD, {}, ON)
    assert "change_percent" not in typed and "change_eur" not in typed  # never typed: no new amount, no change
    assert resolve({}, RECORD, {"current_contribution": "100"}, ON)["current_contribution"] == "100"


def test_amounts_and_age_bands() -> None:
    assert parse_amount("1 234,50 €") == Decimal("1234.50") and parse_amount("71.2") == Decimal("71.2")
    assert parse_amount("") is None and parse_amount("douze") is None and parse_amount("NaN") is None
    assert age_band("2010-01-01", ON) == "moins de 20 ans" and age_band("1940-01-01", ON) == "80 ans et plus"
    assert age_band("1987-03-02", ON) == "30–39 ans" and age_band("1987-03-01", ON) == "40–49 ans"
    assert age_band("", ON) == ""
    assert needed({"change_percent", "cover_level"}) == {"cover_level", "new_contribution", "current_contribution"}


def test_findings_name_the_first_members_and_how_many() -> None:
    found = Findings(max_change_percent=25)
    names = {"new_contribution", "current_contribution"}
    for i in range(1, 9):  # eight members without a new amount
        found.check(f"M{i:07d}", resolve({}, RECORD, {}, ON), names, set(), RECORD, True)
    found.check("M0000020", resolve({}, RECORD, {"new_contribution": "71,20"}, ON), names, set(), RECORD, True)
    found.check("M0000021", resolve({}, RECORD, {"new_contribution": "0"}, ON), names, set(), RECORD, True)
    found.check("M0000022", resolve({}, RECORD, {"new_contribution": "181,84"}, ON), names, set(), RECORD, True)
    errors = found.errors()
    assert errors["values"] == ("8 adhérents sans valeur pour « new_contribution » (nouvelle cotisation) : "
                                "M0000001, M0000002, M0000003, M0000004, M0000005 et 3 autres.")  # fmt: skip
    assert errors["bounds"] == (
        "2 adhérents hors des bornes (nouvelle cotisation positive, évolution d'au plus ±25 %) : "
        "M0000020 (176,20 € → 71,20 €, -59,6 %), M0000021 (nouvelle cotisation 0,00 €)."
    )
    wider = Findings(max_change_percent=60)
    wider.check("M0000020", resolve({}, RECORD, {"new_contribution": "71,20"}, ON), names, set(), RECORD, True)
    assert wider.errors() == {}
    blank = Findings()
    blank.check("M0000030", resolve({}, {**RECORD, "cover_level": ""}, {}, ON), {"cover_level"}, {"last_name"},
                {**RECORD, "cover_level": ""}, False)  # fmt: skip
    assert blank.errors()["values"].startswith("1 adhérent sans valeur pour « cover_level » (formule) : M0000030.")
    assert "« member.last_name »" in blank.errors()["values"]


def test_a_file_gives_each_member_their_own_values() -> None:
    sheet = "N° adhérent;Nouvelle cotisation;Agence\r\nM0000001;71,20;Rennes\r\n???;1\r\nM0000002;;\r\nM0000001;9;x\r\n"
    parsed = parse_member_file(sheet)
    assert parsed.numbers == ["M0000001", "M0000002"] and parsed.bad == [3]
    assert parsed.variables == ["new_contribution", "agence"]
    assert parsed.values["M0000001"] == {"new_contribution": "9", "agence": "x"}  # the last row of a member wins
    assert parsed.values["M0000002"] == {"new_contribution": "", "agence": ""}
    assert parse_member_file("M0000001\nM0000002\n").variables == []


@pytest.fixture
async def engine(redis: Redis) -> Campaigns:
    streams = Streams(redis, shards=1, maxlen=100_000, dedup_ttl_s=3600)
    router = Router(redis, streams, AckResponder(), Contacts(redis), Conversations(redis))
    return Campaigns(redis, enqueue=router.enqueue_many, rates={"email": 100.0, "sms": 100.0})


def contribution(**over: object) -> dict[str, object]:
    return {"kind": "contribution_change", "title": "Évolution de votre cotisation", "effective_date": "2027-03-01",
            "channels": ["sms", "email"], **over}  # fmt: skip


async def test_count_and_schedule_refuse_naming_members_then_each_notice_has_its_own_figures(
    engine: Campaigns, redis: Redis
) -> None:
    await load(redis, [member(i) for i in range(1, 31)])  # every record says 64,20 € a month
    campaign = from_input(contribution())
    await engine.save(campaign)
    rows = "".join(f"M{i:07d};{49 + i},{i:02d}\r\n" for i in range(1, 31) if i not in (7, 8))
    await engine.import_list(campaign, "numéro;nouvelle cotisation\r\n" + rows + "M0000007;\r\nM0000008;12,00\r\n")
    assert await redis.hget(key(campaign.id, "vars"), "M0000003") == '{"new_contribution":"52,03"}'
    with pytest.raises(CampaignError) as counted:
        await engine.count(campaign)
    assert (
        "1 adhérent sans valeur pour « new_contribution » (nouvelle cotisation) : M0000007."
        == counted.value.errors["values"]
    )
    assert "M0000008 (64,20 € → 12,00 €, -81,3 %)" in counted.value.errors["bounds"]
    with pytest.raises(CampaignError) as scheduled:
        await engine.schedule(campaign, TUESDAY_10AM, now=TUESDAY_10AM)
    assert scheduled.value.errors == counted.value.errors
    assert not await redis.exists(key(campaign.id, "due"))  # nothing planned
    fixed = rows + "M0000007;56,07\r\nM0000008;57,08\r\n"
    await engine.import_list(campaign, "numéro;nouvelle cotisation\r\n" + fixed)
    assert (await engine.count(campaign))["total"] == 30
    shown = await engine.preview(campaign, 3)
    assert [s["member"] for s in shown] == ["M0000001", "M0000002", "M0000003"]
    assert shown[1]["figures"] == {"current_contribution": "64.20", "new_contribution": "51.02",
                                   "change_eur": "-13.18", "change_percent": "-20.5"}  # fmt: skip
    await engine.schedule(campaign, TUESDAY_10AM, now=TUESDAY_10AM)
    await engine.tick(TUESDAY_10AM.timestamp())
    sent = {m.meta["member"]: m.text for m in await notices(redis)}
    assert len(sent) == 30
    for i in range(1, 31):
        new = Decimal(f"{49 + i}.{i:02d}")
        change = new - Decimal("64.20")
        pct = (change * 100 / Decimal("64.20")).quantize(Decimal("0.1"))
        sign = "+" if change > 0 else ""
        expected = f"de 64,20 € à {str(new).replace('.', ',')} € ({sign}{str(change).replace('.', ',')} €, {sign}{str(pct).removesuffix('.0').replace('.', ',')} %)"
        assert expected in sent[f"M{i:07d}"], sent[f"M{i:07d}"]


async def test_a_constant_new_amount_for_members_paying_different_amounts_is_refused(
    engine: Campaigns, redis: Redis
) -> None:
    """The incident of issue 18: one new amount typed for everyone, next to each member's own."""
    await load(redis, [member(1), member(2)])
    await redis.hset("mbr:{M0000002}", "contribution_eur", "176.20")
    campaign = from_input(contribution(values={"new_contribution": "67.10", "change_percent": "3.2"}))
    await engine.save(campaign)
    with pytest.raises(CampaignError) as refused:
        await engine.count(campaign)
    assert refused.value.errors == {"bounds": (
        "1 adhérent hors des bornes (nouvelle cotisation positive, évolution d'au plus ±25 %) : "
        "M0000002 (176,20 € → 67,10 €, -61,9 %)."
    )}  # fmt: skip
    edited = await engine.update(campaign, contribution(values={"new_contribution": "67.10"}, max_change_percent="70"))
    assert edited.id == campaign.id and (await engine.count(edited))["total"] == 2
    await engine.schedule(edited, TUESDAY_10AM, now=TUESDAY_10AM)
    with pytest.raises(CampaignError):
        await engine.update(edited, contribution())  # scheduled: no longer a draft
