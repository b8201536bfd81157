"""Notices in French: dates, euros, percentages, SMS encoding, e-mail parts, bad templates refused."""

from __future__ import annotations

import datetime as dt

import pytest

from campaigns.model import CampaignError, from_input
from campaigns.render import Renderer, RenderError, default_templates, reads
from campaigns.variables import resolve

MEMBER = {"first_name": "Camille", "last_name": "Durand", "contribution_eur": "1234.5", "cover_level": "confort"}
CAMPAIGN = {"title": "Évolution de votre cotisation", "effective_date": "2027-01-01"}


def own(member: dict[str, str], values: dict[str, str]) -> dict[str, object]:
    return resolve(values, member, {}, dt.date(2027, 1, 1))


def test_french_formatting_and_sms_preview() -> None:
    values = {"new_contribution": "1290", "change_percent": "9.9"}  # a typed change is ignored: it is computed
    renderer = Renderer(default_templates("contribution_change"), values)
    sms = renderer.render("sms", MEMBER, CAMPAIGN, own(MEMBER, values)).preview()
    assert "dès le 1er janvier 2027" in sms["text"]
    assert "1 234,50 € à 1 290,00 € (+55,50 €, +4,5 %)" in sms["text"]
    assert (sms["encoding"], sms["segments"]) == ("GSM-7", 1) and sms["units"] <= 160
    mail = renderer.render("email", MEMBER, CAMPAIGN, own(MEMBER, values))
    assert mail.subject == "Évolution de votre cotisation au 1er janvier 2027"
    assert "1\u202f234,50\xa0€" in mail.text and "<p>Bonjour Camille Durand,</p>" in mail.html


def test_accents_outside_gsm7_make_a_ucs2_sms() -> None:
    renderer = Renderer({"sms": {"text": "Votre garantie évolue : « {{ campaign.title }} » ça change"}}, {})
    preview = renderer.render("sms", MEMBER, CAMPAIGN).preview()
    assert preview["encoding"] == "UCS-2"


def test_member_text_is_escaped_in_html() -> None:
    renderer = Renderer({"email": {"text": "Bonjour {{ member.first_name }}"}}, {})
    mail = renderer.render("email", {**MEMBER, "first_name": "<script>x</script>"}, CAMPAIGN)
    assert "<script>" not in mail.html and "&lt;script&gt;" in mail.html


def test_a_bad_template_is_refused_before_sending() -> None:
    with pytest.raises(RenderError):
        Renderer({"sms": {"text": "{{ oops"}}, {})
    # A variable the campaign does not give may come from the per-member file (count and schedule then
    # refuse members without it, tests/campaigns/test_variables.py); a member field must exist now.
    from_input({"kind": "contribution_change", "title": "Cotisation 2027", "effective_date": "2027-01-01",
                "channels": ["sms"], "values": {"change_percent": "4"}})  # fmt: skip
    with pytest.raises(CampaignError) as exc:
        from_input({"kind": "information", "title": "Cotisation 2027", "effective_date": "2027-01-01",
                    "channels": ["sms"], "templates": {"sms": {"text": "{{ member.frist_name }}"}}})  # fmt: skip
    assert "frist_name" in exc.value.errors["templates"]
    with pytest.raises(CampaignError) as both:
        from_input({"kind": "information", "title": "x", "effective_date": "2027-01-01",
                    "date_field": "contribution_call_date", "channels": ["fax"]})  # fmt: skip
    assert set(both.value.errors) == {"title", "effective_date", "channels"}


def test_parts_rendered_once_per_distinct_fields_still_fit_each_member() -> None:
    renderer = Renderer(default_templates("contribution_change"), {"new_contribution": "70"})
    members = [{**MEMBER, "last_name": f"Durand{i}", "contribution_eur": ("60", "65")[i % 2]} for i in range(2500)]
    for i, m in enumerate(members):  # SMS: one render per amount; e-mail: per name (stops remembering)
        extra = own(m, {"new_contribution": "70"})
        sms, mail = renderer.render("sms", m, CAMPAIGN, extra), renderer.render("email", m, CAMPAIGN, extra)
        assert ("60,00 € à 70,00 € (+10,00 €, +16,7 %)" if i % 2 == 0 else "65,00 € à 70,00 € (+5,00 €, +7,7 %)") in sms.text
        assert f"Bonjour Camille Durand{i}," in mail.text
        assert mail.subject == "Évolution de votre cotisation au 1er janvier 2027"
    sms_part, text_part = renderer.compiled["sms"]["text"], renderer.compiled["email"]["text"]
    assert (sms_part.misses, len(sms_part.done)) == (2, 2)
    assert text_part.fields is None  # every member differs: looking up would only cost time


def test_what_a_template_reads_decides_what_is_remembered() -> None:
    assert reads("{{ member.first_name }} {{ member['last_name'] }} {{ campaign.title }} {{ x }}") == {
        "member": ("first_name", "last_name"),
        "campaign": ("title",),
    }
    whole = "{% for k, v in member.items() %}{{ k }}{% endfor %}{{ member[key] }}{{ member }}"
    for source in (whole, "{{ member[key] }}", "{{ member }}", "{% for k in member.keys() %}{{ k }}{% endfor %}"):
        assert reads(source) == {"member": None, "campaign": None}
    # A template that reads the whole record is rendered for each member, never from memory.
    renderer = Renderer({"sms": {"text": "{{ member | length }} champs, {{ member.first_name }}"}}, {})
    assert renderer.render("sms", {"first_name": "Léa"}, CAMPAIGN).text == "1 champs, Léa"
    assert renderer.render("sms", {"first_name": "Léa", "x": "y"}, CAMPAIGN).text == "2 champs, Léa"
