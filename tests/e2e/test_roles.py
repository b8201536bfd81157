"""One role per process, several copies, nothing configured but ``REDIS_URL``: ``run.py gateway``,
two ``run.py router``, ``run.py dispatcher`` and ``run.py scheduler`` on one redis-server; SMS in,
replies out once each, even with a router killed -9 half-way; ``/readyz`` tells what is missing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from gateway.redis_server import PrivateRedis
from tests.e2e.conftest import ACCOUNT_SID, AUTH_TOKEN, OUR_NUMBER
from tests.e2e.product import ROOT, Product, free_port
from tests.e2e.test_sms_e2e import post_sms
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import FakeTwilio


@pytest.fixture
def shared_redis(tmp_path: Path) -> Iterator[str]:
    server = PrivateRedis(tmp_path / "redis")
    yield server.start()
    server.stop()


def start(role: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen([sys.executable, str(ROOT / "run.py"), role], env=env, cwd=ROOT, stdout=out, stderr=out)


async def readyz(url: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            try:
                async with http.get(f"{url}/readyz") as resp:
                    return resp.status, await resp.json()
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
    raise AssertionError("the gateway never answered")


async def test_roles_as_processes_with_copies_share_the_work_and_survive_a_kill(
    shared_redis: str, fake_twilio: FakeTwilio, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ, "REDIS_URL": shared_redis, "RESPONDER": "ack", "PORT": str(port),
        "SMTP_LISTEN_PORT": str(free_port()), "SMTP_URL": smtp_sink.url, "VAR_DIR": str(tmp_path / "var"),
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "TWILIO_FROM": OUR_NUMBER,
        "TWILIO_API_BASE": fake_twilio.base_url, "CLAIM_IDLE_MS": "1000", "SECRET_KEY": "roles-test-secret",
    }  # fmt: skip
    procs = {
        name: start(role, env, tmp_path / f"{name}.log")
        for name, role in (("gateway", "gateway"), ("router-1", "router"), ("router-2", "router"),
                           ("dispatcher", "dispatcher"), ("scheduler", "scheduler"))
    }  # fmt: skip
    product = Product({"PORT": str(port), "VAR_DIR": str(tmp_path / "var")}, tmp_path / "unused.log")
    try:
        status, body = await readyz(product.url)
        assert status == 200 and body["checks"] == {"redis": "ok", "smtp_relay": "ok"}
        senders = [f"+336398{i:05d}" for i in range(60)]

        def log_of(name: str) -> str:
            return (tmp_path / f"{name}.log").read_text(errors="replace")

        killed = survivor = ""
        async with aiohttp.ClientSession() as http:
            for n, sender in enumerate(senders):
                assert (await post_sms(http, product, sender, "Bonjour"))[0] == 200
                if n == 30:  # a router that has been working dies mid-stream: the other takes over
                    await fake_twilio.wait_for(10, timeout=30)
                    killed = next(r for r in ("router-1", "router-2") if "inbound handled" in log_of(r))
                    survivor = "router-2" if killed == "router-1" else "router-1"
                    handled_before = log_of(survivor).count("inbound handled")
                    procs[killed].send_signal(signal.SIGKILL)
        await fake_twilio.wait_for(len(senders), timeout=60)
        await asyncio.sleep(2.0)  # nothing more may come
        replies = Counter(m.to for m in fake_twilio.messages)
        assert set(replies) == set(senders) and set(replies.values()) == {1}
        # The survivor handled what came after the kill; no other role handles inbound messages.
        assert log_of(survivor).count("inbound handled") > handled_before
        assert "inbound handled" not in log_of("gateway") + log_of("dispatcher") + log_of("scheduler")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert all(p.returncode in (0, -signal.SIGKILL) for p in procs.values())


async def test_readyz_names_what_is_missing(shared_redis: str, tmp_path: Path) -> None:
    port = free_port()
    dead = free_port()  # nothing listens there
    env = {
        **os.environ, "REDIS_URL": shared_redis, "PORT": str(port), "SMTP_LISTEN_PORT": str(free_port()),
        "VAR_DIR": str(tmp_path / "var"), "RESPONDER": "rasa", "RASA_URL": f"http://127.0.0.1:{dead}",
        "ACTIONS_URL": f"http://127.0.0.1:{dead}", "SMTP_URL": f"smtp://127.0.0.1:{dead}",
    }  # fmt: skip
    proc = start("gateway", env, tmp_path / "gateway.log")
    try:
        status, body = await readyz(f"http://127.0.0.1:{port}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert status == 503
    assert body["checks"] == {
        "redis": "ok",
        "rasa": "unavailable",
        "actions": "unavailable",
        "smtp_relay": "unavailable",
    }
