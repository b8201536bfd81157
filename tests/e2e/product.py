"""The running product, as a user starts it: ``run.py serve`` in a subprocess.

Tests drive it from outside (signed webhooks, SMTP, WebSocket, Chromium) and may kill it
with SIGKILL and start it again on the same Redis.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]


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
