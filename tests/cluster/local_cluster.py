"""A real local Redis Cluster: 3 masters and 3 replicas on free loopback ports.

Each node is a ``redis-server --cluster-enabled yes`` in its own directory; ``redis-cli --cluster
create`` assigns the slots and the replicas. Tests may kill -9 a master and watch its replica take over.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_node_port() -> int:
    """A free loopback port whose cluster bus port (port + 10000) is free and valid too."""
    for _ in range(200):
        port = random.randint(20000, 45000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


@dataclass
class Node:
    port: int
    dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cli(self, *args: str, timeout: float = 5.0) -> str:
        out = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), *args],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        return out.stdout.decode(errors="replace")

    def info(self, command: str = "CLUSTER", *args: str) -> dict[str, str]:
        text = self.cli(command, *args) if args else self.cli(command, "INFO")
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class LocalCluster:
    root: Path
    node_timeout_ms: int = 1500
    masters: int = 3
    replicas_per_master: int = 1
    nodes: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The product's cluster URL (every node a seed, so a dead one does not stop a start)."""
        return "redis+cluster://" + ",".join(n.addr for n in self.nodes)

    def start(self, timeout: float = 30.0) -> None:
        if not shutil.which("redis-server") or not shutil.which("redis-cli"):
            raise RuntimeError("redis-server and redis-cli are needed for the cluster tests")
        for _ in range(self.masters * (1 + self.replicas_per_master)):
            port = free_node_port()
            node = Node(port, self.root / str(port))
            node.dir.mkdir(parents=True)
            self._spawn(node)
            self.nodes.append(node)
        for node in self.nodes:
            self._wait(lambda n=node: n.cli("PING").strip() == "PONG", timeout, f"{node.addr} answers")
        create = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(n.addr for n in self.nodes),
                "--cluster-replicas",
                str(self.replicas_per_master),
                "--cluster-yes",
            ],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if create.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {create.stdout.decode()[-2000:]}")
        self.wait_healthy(timeout)

    def _spawn(self, node: Node) -> None:
        log = (node.dir / "redis.log").open("ab")
        args = ["--port", str(node.port), "--bind", "127.0.0.1", "--daemonize", "no", "--dir", str(node.dir),
                "--cluster-enabled", "yes", "--cluster-config-file", str(node.dir / "nodes.conf"),
                "--cluster-node-timeout", str(self.node_timeout_ms),
                "--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]  # fmt: skip
        node.proc = subprocess.Popen(
            ["redis-server", *args],
            stdout=log,
            stderr=log,
            cwd=node.dir,
        )

    def _wait(self, ok: object, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(subprocess.TimeoutExpired, ValueError):
                if ok():  # type: ignore[operator]
                    return
            time.sleep(0.1)
        raise RuntimeError(f"cluster not ready in {timeout}s: {what}")

    def masters_now(self) -> list[Node]:
        """The live nodes that currently serve slots as masters."""
        return [n for n in self.nodes if n.alive and n.info("INFO", "replication").get("role") == "master"]

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Every live node says cluster_state:ok with all slots served, and every replica is in sync."""

        def ok() -> bool:
            for n in self.nodes:
                if not n.alive:
                    continue
                info = n.info()
                if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != "16384":
                    return False
                repl = n.info("INFO", "replication")
                if repl.get("role") == "slave" and repl.get("master_link_status") != "up":
                    return False
            return True

        self._wait(ok, timeout, "cluster_state:ok everywhere, replicas in sync")

    def kill9(self, node: Node) -> None:
        assert node.proc is not None
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(timeout=10)

    def flushall(self) -> None:
        for node in self.masters_now():
            node.cli("FLUSHALL")

    def stop(self) -> None:
        for node in self.nodes:
            if node.alive:
                assert node.proc is not None
                node.proc.send_signal(signal.SIGTERM)
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(node.proc.pid, signal.SIGKILL)
