"""An agent's own phone (issue 22): French national or international forms kept as E.164, a clear French
refusal otherwise; ``Users.set_phone`` changes only the phone; ``run.py set-phone`` does the same for a
supervisor or administrator, and nothing is changed when the number is refused."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from redis.asyncio import Redis

from gateway import keys
from staff.users import PHONE_REFUSED, UserError, Users, agent_phone, phone_display
from tests.e2e.product import ROOT

PASSWORD = "un-mot-de-passe-assez-long"


@pytest.mark.parametrize(
    ("typed", "kept"),
    [
        ("06 12 34 56 78", "+33612345678"),
        ("06.12.34.56.78", "+33612345678"),
        ("0612345678", "+33612345678"),
        ("+33 6 12 34 56 78", "+33612345678"),
        ("+33 (0)6 12 34 56 78", "+33612345678"),
        ("0033612345678", "+33612345678"),
        ("01 23 45 67 89", "+33123456789"),
        ("0692 12 34 56", "+262692123456"),  # a Réunion mobile, written nationally
        ("+32 470 12 34 56", "+32470123456"),  # an agent working from Belgium
        ("  ", ""),
        ("", ""),
    ],
)
def test_phone_forms_are_kept_as_e164(typed: str, kept: str) -> None:
    assert agent_phone(typed) == kept


@pytest.mark.parametrize(
    "typed", ["06 12", "12345", "julie", "+33 6 12", "06 12 34 56 78 90", "+999 1234567", "9" * 60]
)
def test_anything_else_is_refused_in_french(typed: str) -> None:
    with pytest.raises(UserError) as refused:
        agent_phone(typed)
    assert str(refused.value) == PHONE_REFUSED
    assert "06 12 34 56 78" in PHONE_REFUSED and "+33 6 12 34 56 78" in PHONE_REFUSED


def test_phone_display() -> None:
    assert phone_display("+33612345678") == "+33 6 12 34 56 78"
    assert phone_display("") == ""


async def test_set_phone_changes_only_the_phone(redis: Redis) -> None:
    users = Users(redis)
    await users.create("julie", PASSWORD, first_name="Julie", role="agent", skills=["benefits"])
    before = await redis.hgetall(keys.user("julie"))
    user = await users.set_phone("julie", "06 12 34 56 78")
    assert user.phone == "+33612345678" and user.public()["has_phone"] is True
    after = await redis.hgetall(keys.user("julie"))
    assert {k: v for k, v in after.items() if k not in ("phone", "updated_ms")} == {
        k: v for k, v in before.items() if k not in ("phone", "updated_ms")
    }
    with pytest.raises(UserError):
        await users.set_phone("julie", "06 12")
    assert (await users.get("julie")).phone == "+33612345678"  # type: ignore[union-attr]
    assert (await users.set_phone("julie", "")).phone == ""  # removed
    with pytest.raises(UserError, match="utilisateur inconnu"):
        await users.set_phone("nobody", "06 12 34 56 78")
    assert not await users.exists("nobody")


async def test_create_user_takes_the_national_form_too(redis: Redis) -> None:
    user = await Users(redis).create(
        "paul", PASSWORD, first_name="Paul", role="agent", skills=["benefits"], phone="07 81 23 45 67"
    )
    assert user.phone == "+33781234567"


def set_phone(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "set-phone", *args], capture_output=True, text=True,
        env={**os.environ, "REDIS_URL": redis_url}, cwd=ROOT, check=False,
    )  # fmt: skip


async def test_run_py_set_phone(redis: Redis, redis_url: str) -> None:
    users = Users(redis)
    await users.create("julie", PASSWORD, first_name="Julie", role="agent", skills=["benefits"])
    done = await asyncio.to_thread(set_phone, redis_url, "julie", "06 12 34 56 78")
    assert done.returncode == 0, done.stderr
    assert "Téléphone de julie enregistré : +33 6 12 34 56 78." in done.stdout
    assert (await users.get("julie")).phone == "+33612345678"  # type: ignore[union-attr]

    refused = await asyncio.to_thread(set_phone, redis_url, "julie", "06 12")
    assert refused.returncode == 1 and PHONE_REFUSED in refused.stderr and "Rien n'a été modifié" in refused.stderr
    assert (await users.get("julie")).phone == "+33612345678"  # type: ignore[union-attr]

    unknown = await asyncio.to_thread(set_phone, redis_url, "nobody", "06 12 34 56 78")
    assert unknown.returncode == 1 and "utilisateur inconnu : nobody" in unknown.stderr

    removed = await asyncio.to_thread(set_phone, redis_url, "julie", "")
    assert removed.returncode == 0 and "retiré" in removed.stdout
    assert (await users.get("julie")).phone == ""  # type: ignore[union-attr]


def test_a_csrf_token_with_characters_beyond_ascii_is_a_mismatch_not_an_error() -> None:
    from staff.users import csrf_ok

    assert csrf_ok("abc123", "abc123")
    assert not csrf_ok("abc123", "abc124")
    assert not csrf_ok("abc123", "¼ñ\udcff")  # what a hostile form post may carry (found by the fuzz test)
    assert not csrf_ok("abc123", "") and not csrf_ok("", "abc123")
