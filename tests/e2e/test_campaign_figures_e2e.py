"""A contribution campaign whose figures are each member's own, end to end against one ``run.py serve``
for the module: 1,000 members with distinct current and new amounts given in a file to ``run.py
campaign create --list``, every notice (e-mail to the loopback SMTP sink, SMS to the fake Twilio)
states that member's current and new contribution and the right change in euros and in %; a missing
value and an out-of-bounds figure refuse count and schedule naming the members; a too-late start is
still refused with the latest allowed date."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from redis.asyncio import Redis

from campaigns.rules import PARIS, fr_date, is_public_holiday, latest_notice_date
from members.records import Member
from tests.e2e.product import ACCOUNT_SID, AUTH_TOKEN, ROOT, TELEGRAM_TOKEN, Product, loopback_env
from tests.e2e.test_campaign_e2e import load
from tests.e2e.test_sms_e2e import redis_of
from tests.fakes.smtp import SmtpSink
from tests.fakes.telegram import FakeTelegram
from tests.fakes.twilio import FakeTwilio

TODAY = dt.datetime.now(PARIS)
pytestmark = pytest.mark.skipif(
    TODAY.isoweekday() == 7 or is_public_holiday(TODAY.date()),
    reason="notices are never sent on a Sunday or a public holiday in Paris: nothing to observe today",
)
EFFECTIVE = (TODAY.date() + dt.timedelta(days=70)).replace(day=1)
ANY_HOUR = {"start": "00:00", "end": "23:59", "weekdays": [1, 2, 3, 4, 5, 6]}  # the test runs at any hour
N = 1000


def figures(i: int) -> tuple[Decimal, Decimal]:
    """Member i's current and new monthly contribution: all distinct, changes from -20 % to +20 %."""
    current = Decimal("40.00") + Decimal("0.07") * i
    new = (current * (1 + Decimal((i % 41) - 20) / 100)).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return current, new


def fr(amount: Decimal) -> str:
    return f"{amount:.2f}".replace(".", ",")


def expected_phrase(current: Decimal, new: Decimal) -> str:
    change = new - current
    pct = (change * 100 / current).quantize(Decimal("0.1"), ROUND_HALF_UP)
    sign = "+" if change > 0 else ""
    return f"de {fr(current)} € à {fr(new)} € ({sign}{fr(change)} €, {sign}{str(pct).removesuffix('.0').replace('.', ',')} %)"


MEMBERS = [
    Member(f"M5{i:06d}", "Hélène", f"Lambert{i}", "1972-06-30", f"+3319850{i:04d}" if i % 2 == 0 else "",
           f"h{i}@example.fr" if i % 2 else "", "confort", "Normandie", "famille", str(figures(i)[0]), "2027-03-10")
    for i in range(1, N + 1)
]  # fmt: skip


class Setup:
    def __init__(self, product: Product, smtp: SmtpSink, twilio: FakeTwilio, tmp: Path) -> None:
        self.product, self.smtp, self.twilio, self.tmp = product, smtp, twilio, tmp


@pytest.fixture(scope="module")
async def setup(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Setup]:
    tmp = tmp_path_factory.mktemp("campaign-figures")
    async with SmtpSink() as smtp, FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as twilio, FakeTelegram(TELEGRAM_TOKEN) as tg:
        os.environ.pop("REDIS_URL", None)
        env = loopback_env(tmp / "var", twilio.base_url, tg.base_url, smtp.url)
        product = Product({**env, "EMAIL_RATE_PER_S": "500", "SMS_RATE_PER_S": "500"}, tmp / "product.log")
        await product.start()
        redis: Redis = await redis_of(product)
        await load(redis, MEMBERS)
        await redis.aclose()
        yield Setup(product, smtp, twilio, tmp)
        product.stop()
        with contextlib.suppress(OSError, ValueError, ProcessLookupError):
            os.kill(int((tmp / "var" / "redis" / "redis.pid").read_text()), signal.SIGTERM)


def cli(setup: Setup, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "campaign", *args],
        env={**setup.product.env, "REDIS_URL": ""},  # the product's private Redis, found under VAR_DIR
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def create(setup: Setup, name: str, rows: dict[str, str], **spec: object) -> str:
    """A contribution campaign whose audience and new amounts are a French spreadsheet's CSV."""
    path = setup.tmp / f"{name}.json"
    path.write_text(json.dumps({"kind": "contribution_change", "title": "Évolution de votre cotisation",
                                "effective_date": EFFECTIVE.isoformat(), "channels": ["email", "sms"],
                                "window": ANY_HOUR, **spec}), encoding="utf-8")  # fmt: skip
    sheet = setup.tmp / f"{name}.csv"
    lines = ["N° adhérent;Nouvelle cotisation;Agence"] + [f"{n};{a};Caen" for n, a in rows.items()]
    sheet.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1252"))
    done = cli(setup, "create", str(path), "--list", str(sheet))
    assert done.returncode == 0, done.stderr
    assert "valeurs par adhérent : new_contribution, agence" in done.stderr
    return done.stdout.strip()


def own_rows(numbers: range) -> dict[str, str]:
    return {f"M5{i:06d}": fr(figures(i)[1]) for i in numbers}


@pytest.mark.timeout(300)
async def test_each_of_1000_notices_states_the_members_own_figures(setup: Setup) -> None:
    cid = create(setup, "own", own_rows(range(1, N + 1)))
    counted = cli(setup, "count", cid)
    assert counted.returncode == 0 and counted.stdout.startswith(f"{N} adhérents : e-mail 500, SMS 500"), counted
    preview = cli(setup, "preview", cid).stdout.replace("\u202f", " ").replace("\xa0", " ")
    assert preview.count("=== M5") == 3 and expected_phrase(*figures(2)) in preview  # member 2's SMS
    scheduled = cli(setup, "schedule", cid)
    assert scheduled.returncode == 0 and f"Programmée : {N} adhérents" in scheduled.stdout, scheduled.stderr
    assert "hors des heures ouvrées" in scheduled.stderr  # the window was warned about

    deadline = time.monotonic() + 120
    while len(setup.smtp.received) + len(setup.twilio.messages) < N and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    mails = {r.rcpt_tos[0]: r.message for r in setup.smtp.received}
    sms = {m.to: m.body for m in setup.twilio.messages}
    assert len(mails) == N // 2 and len(sms) == N // 2
    wrong = []
    for i, m in enumerate(MEMBERS, start=1):
        phrase = expected_phrase(*figures(i))
        if m.email:
            body = mails[m.email].get_body(preferencelist=("plain",))
            assert body is not None
            text = body.get_content().replace("\u202f", " ").replace("\xa0", " ")
            ok = f"de {fr(figures(i)[0])} € à {fr(figures(i)[1])} €" in text and _change(i) in text
        else:
            ok = phrase in sms[m.phone]
        if not ok:
            wrong.append(m.number)
    assert not wrong, f"{len(wrong)} notices without their member's figures, first {wrong[:5]}"


def _change(i: int) -> str:
    """The e-mail's « soit une évolution de +2,90 € (+4,5 %) » for member i."""
    current, new = figures(i)
    change = new - current
    pct = (change * 100 / current).quantize(Decimal("0.1"), ROUND_HALF_UP)
    sign = "+" if change > 0 else ""
    return f"soit une évolution de {sign}{fr(change)} € ({sign}{str(pct).removesuffix('.0').replace('.', ',')} %)"


async def test_missing_values_and_out_of_bounds_figures_are_refused_naming_the_members(setup: Setup) -> None:
    rows = own_rows(range(1, 41))
    rows["M5000007"] = rows["M5000011"] = ""  # the finance extract left two cells empty
    cid = create(setup, "missing", rows)
    for action in ("count", "schedule"):
        refused = cli(setup, action, cid)
        assert refused.returncode == 1
        assert ("values : 2 adhérents sans valeur pour « new_contribution » (nouvelle cotisation) : "
                "M5000007, M5000011.") in refused.stderr  # fmt: skip

    rows = own_rows(range(1, 41))
    rows["M5000003"], rows["M5000004"] = "0", fr(figures(4)[0] * Decimal("1.3"))  # nothing to pay; +30 %
    cid = create(setup, "bounds", rows)
    refused = cli(setup, "schedule", cid)
    assert refused.returncode == 1
    assert ("bounds : 2 adhérents hors des bornes (nouvelle cotisation positive, évolution d'au plus ±25 %) : "
            "M5000003 (nouvelle cotisation 0,00 €), M5000004 (40,28 € → 52,36 €, +30,0 %).") in refused.stderr  # fmt: skip
    wider = create(setup, "wider", rows | {"M5000003": fr(figures(3)[1])}, max_change_percent=35)
    assert cli(setup, "count", wider).returncode == 0  # the bound is the campaign's own


async def test_a_too_late_start_is_still_refused_with_the_latest_date(setup: Setup) -> None:
    soon = TODAY.date() + dt.timedelta(days=20)
    cid = create(setup, "late", own_rows(range(1, 11)), effective_date=soon.isoformat())
    refused = cli(setup, "schedule", cid)
    assert refused.returncode == 1
    assert f"est le {fr_date(latest_notice_date(soon))}" in refused.stderr
