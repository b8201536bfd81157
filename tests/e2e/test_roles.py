"""One role per process, several copies, nothing configured but ``REDIS_URL``: ``run.py gateway``,
two ``run.py router``, ``run.py dispatcher`` and ``run.py scheduler`` on one redis-server; SMS in,
replies out once each, even with a router killed -9 half-way; two gateways behind one public address
share SMS webhooks and a web chat whose sockets sit on both; ``/readyz`` tells what is missing."""

from __future__ import annotations

import asyncio
import itertools
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
from tests.e2e.test_sms_e2e import PATH, post_sms
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import FakeTwilio, inbound_params, signed_inbound


@pytest.fixture
def shared_redis(tmp_path: Path) -> Iterator[str]:
    server = PrivateRedis(tmp_path / "redis")
    yield server.start()
    server.stop()


def start(role: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen([sys.executable, str(ROOT / "run.py"), role], env=env, cwd=ROOT, stdout=out, stderr=out)


def stop_all(procs: list[subprocess.Popen[bytes]], grace_s: float = 30) -> None:
    """SIGTERM to each process still running, then a wait for each (kill -9 past ``grace_s``)."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()


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
        stop_all(list(procs.values()))
    assert all(p.returncode in (0, -signal.SIGKILL) for p in procs.values())


async def test_two_gateways_behind_one_address_share_webhooks_and_a_web_chat(
    shared_redis: str, fake_twilio: FakeTwilio, tmp_path: Path
) -> None:
    """As behind a load balancer: both gateways know the public address (Twilio signs for it, the web
    chat's pages come from it); a member's web chat has a socket on each (two tabs, or a reconnection
    that landed on the other gateway) and both see every answer, whichever gateway took the message."""
    ports = [free_port(), free_port()]
    public = f"http://127.0.0.1:{ports[0]}"
    base = {
        **os.environ, "REDIS_URL": shared_redis, "RESPONDER": "ack", "PUBLIC_URL": public, "LOG_LEVEL": "DEBUG",
        "VAR_DIR": str(tmp_path / "var"), "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_FROM": OUR_NUMBER, "TWILIO_API_BASE": fake_twilio.base_url, "SECRET_KEY": "roles-test-secret",
    }  # fmt: skip
    procs = [
        start("gateway", {**base, "PORT": str(port), "SMTP_LISTEN_PORT": str(free_port())}, tmp_path / f"gw{n}.log")
        for n, port in enumerate(ports)
    ]
    procs.append(start("worker", {**base, "PORT": str(free_port())}, tmp_path / "worker.log"))
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for url in urls:
            assert (await readyz(url))[0] == 200
        senders = [f"+336397{i:05d}" for i in range(40)]
        async with aiohttp.ClientSession() as http:
            for n, sender in enumerate(senders):  # the balancer alternates; Twilio signed the public address
                headers, body = signed_inbound(
                    public, PATH, AUTH_TOKEN, inbound_params(sender, "Bonjour", to=OUR_NUMBER)
                )
                async with http.post(urls[n % 2] + PATH, data=body, headers=headers) as resp:
                    assert resp.status == 200
            await fake_twilio.wait_for(len(senders), timeout=60)

            origin = {"Origin": public}
            async with http.post(f"{urls[1]}/webchat/session", headers=origin) as resp:
                token = (await resp.json())["token"]
            sockets = [await http.ws_connect(f"{url}/webchat/ws?token={token}", headers=origin) for url in urls]
            frames: list[list[dict[str, str]]] = [[], []]

            async def pump(n: int) -> None:
                async for frame in sockets[n]:
                    frames[n].append(frame.json())

            readers = [asyncio.create_task(pump(n)) for n in range(2)]
            ids = itertools.count(1)

            async def chat(on: int, text: str) -> None:
                """Sends on one tab and waits for its gateway's acknowledgement (the member's next message
                comes after it; two tabs writing at the same instant have no order)."""
                client_id = f"tab-{next(ids):05d}"
                await sockets[on].send_json({"type": "message", "client_id": client_id, "text": text})
                for _ in range(200):
                    if any(f.get("type") == "ack" and f.get("client_id") == client_id for f in frames[on]):
                        return
                    await asyncio.sleep(0.025)
                raise AssertionError(f"no acknowledgement of {text!r}")

            def shown(n: int) -> list[tuple[str, str]]:
                return [(f["type"], f["text"]) for f in frames[n] if f.get("type") in ("echo", "message")]

            await chat(1, "Bonjour, une question")
            await chat(0, "Et une autre")
            for _ in range(200):
                if len(shown(0)) >= 4 and len(shown(1)) >= 4:
                    break
                await asyncio.sleep(0.05)
            for reader in readers:
                reader.cancel()
            for ws in sockets:
                await ws.close()
    finally:
        stop_all(procs)
    replies = Counter(m.to for m in fake_twilio.messages)
    assert set(replies) == set(senders) and set(replies.values()) == {1}
    # Both gateways took webhooks; each tab shows both messages and both answers, in the same order.
    handled = [(tmp_path / f"gw{n}.log").read_text(errors="replace") for n in range(2)]
    assert all("inbound accepted" in log for log in handled), handled
    assert shown(0) == shown(1)
    assert sorted(kind for kind, _ in shown(0)) == ["echo", "echo", "message", "message"]
    assert [text for kind, text in shown(0) if kind == "echo"] == ["Bonjour, une question", "Et une autre"]
    assert all(p.returncode == 0 for p in procs)


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
