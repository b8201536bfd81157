"""``run.py create-user`` on a login that exists: refused in French and nothing changed, unless
``--update`` is given (then everything given is changed, the creation date kept)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from redis.asyncio import Redis

from gateway import keys
from staff.users import UserExists, Users
from tests.e2e.product import ROOT

FIRST = "un-premier-mot-de-passe"
SECOND = "un-second-mot-de-passe"


async def create_user(redis_url: str, password: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The real command, as an administrator types it (the password on standard input)."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(ROOT / "run.py"), "create-user", *args, "--password-stdin"],
        input=password + "\n", capture_output=True, text=True, env={**os.environ, "REDIS_URL": redis_url}, cwd=ROOT,
        check=False,
    )  # fmt: skip


async def test_an_existing_login_is_changed_only_with_update(redis: Redis, redis_url: str) -> None:
    users = Users(redis)
    made = await create_user(redis_url, FIRST, "julie", "--first-name", "Julie", "--skills", "benefits")
    assert made.returncode == 0, made.stderr
    assert "Utilisateur julie (agent, compétences : benefits) enregistré." in made.stdout
    created = await redis.hget(keys.user("julie"), "created_ms")

    # The same login again, as if for someone else: refused, said in French, nothing changed.
    again = await create_user(redis_url, SECOND, "Julie", "--first-name", "Julia", "--role", "supervisor")
    assert again.returncode == 1
    assert "l'identifiant julie existe déjà" in again.stderr and "--update" in again.stderr
    assert "Rien n'a été modifié" in again.stderr
    kept = await users.get("julie")
    assert kept is not None and (kept.first_name, kept.role, kept.skills) == ("Julie", "agent", ("benefits",))
    assert await users.authenticate("julie", FIRST) is not None
    assert await users.authenticate("julie", SECOND) is None

    # With --update: changed (password too), the creation date kept.
    updated = await create_user(redis_url, SECOND, "julie", "--first-name", "Julie", "--title", "conseillère",
                                "--skills", "benefits,complaints", "--update")  # fmt: skip
    assert updated.returncode == 0, updated.stderr
    assert "Utilisateur julie (agent, compétences : benefits, complaints) mis à jour." in updated.stdout
    user = await users.get("julie")
    assert user is not None and user.skills == ("benefits", "complaints") and user.speaker == "Julie, conseillère"
    assert await users.authenticate("julie", SECOND) is not None
    assert await users.authenticate("julie", FIRST) is None
    assert await redis.hget(keys.user("julie"), "created_ms") == created

    # The library says the same to any other caller.
    with pytest.raises(UserExists):
        await users.create("julie", SECOND, first_name="Julie", role="agent", skills=["benefits"])
