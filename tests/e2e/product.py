"""The running product, as a user starts it: ``run.py serve`` in a subprocess.

Tests drive it from outside (signed webhooks, SMTP, WebSocket, Chromium) and may kill it
with SIGKILL and start it again on the same Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]


ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
AUTH_TOKEN = "e2e0auth0token0000000000000000aa"
OUR_NUMBER = "+33700000001"
TELEGRAM_TOKEN = "7000001:AAE2eTestTokenForLoopbackOnly0000000"
TELEGRAM_SECRET = "e2e-telegram-secret"


def loopback_env(var_dir: Path, twilio_base: str, telegram_base: str, smtp_url: str) -> dict[str, str]:
    """The product's environment against the loopback providers; no REDIS_URL: the product starts
    (and after a kill, adopts) its private redis-server under ``var_dir``."""
    return {
        "VAR_DIR": str(var_dir),
        "RESPONDER": "ack",  # the gateway's own tests; the bot's are in test_bot_e2e.py
        "CLAIM_IDLE_MS": "1000",
        "SEND_BACKOFF_BASE_S": "0.2",
        "SEND_BACKOFF_MAX_S": "1",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_FROM": OUR_NUMBER,
        "TWILIO_API_BASE": twilio_base,
        "TELEGRAM_TOKEN": TELEGRAM_TOKEN,
        "TELEGRAM_SECRET_TOKEN": TELEGRAM_SECRET,
        "TELEGRAM_API_BASE": telegram_base,
        "SMTP_URL": smtp_url,
        # Every simulated member writes from 127.0.0.1: the per-address limits have their own test.
        "CALLBACK_BURST": "100000",
        "CALLBACK_INVALID_BURST": "100000",
        "PUBLIC_BURST": "100000",
        # No contribution reminders to the demo members (their call dates move with the day the tests run):
        # tests/members/test_proactive.py checks them.
        "PROACTIVE_DUE_DAYS": "0",
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Product:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = int(env.get("PORT") or free_port())
        self.smtp_port = int(env.get("SMTP_LISTEN_PORT") or free_port())
        self.env = {
            **os.environ,
            "LOG_LEVEL": "INFO",
            **env,
            "PORT": str(self.port),
            "SMTP_LISTEN_PORT": str(self.smtp_port),
        }
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def env_var_dir(self) -> Path:
        return Path(self.env["VAR_DIR"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 30.0) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "run.py"), "serve"],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"run.py serve exited with {self.proc.returncode}:\n{self.logs()[-3000:]}")
                try:
                    async with session.get(f"{self.url}/healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError(f"run.py serve not ready in {timeout}s:\n{self.logs()[-3000:]}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 30.0) -> int:
        """Ctrl-C, as a person would; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


MANAGE = ROOT / "bot" / "manage.py"


class RasaServer:
    """A Rasa server with its action server, as ``bot/manage.py run`` starts them (the model is trained
    first if the bot's files changed; the training is cached)."""

    def __init__(self, env: dict[str, str], log_path: Path, actions_port: int = 0) -> None:
        self.env = {**os.environ, **env}  # REDIS_URL: trackers, locks and member records
        self.log_path = log_path
        self.port, self.actions_port = free_port(), actions_port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def actions_url(self) -> str:
        return f"http://127.0.0.1:{self.actions_port}"

    def launch(self) -> None:
        subprocess.run(["python3", str(MANAGE), "train"], check=True, stdout=subprocess.DEVNULL)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            ["python3", str(MANAGE), "run", "--port", str(self.port), "--actions-port", str(self.actions_port)],
            stdout=log,
            stderr=log,
            env=self.env,
        )

    def wait(self, timeout: float = 240.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rasa exited during start-up:\n{self.log_path.read_text(errors='replace')[-2000:]}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{self.url}/status", timeout=1) as resp:
                    if resp.status == 200:
                        return
            time.sleep(0.5)
        raise RuntimeError(f"rasa not ready in {timeout:.0f} s")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
