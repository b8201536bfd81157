#!/usr/bin/env python3
"""Web-chat benchmark: N open widget sockets on one web process, their cost and their replies.

Starts ``run.py serve`` (the real product: private redis-server, web and worker processes, the
acknowledging responder in place of the bot, whose cost ``bench/bot.py`` measures) and opens
``--sockets`` web-chat sockets the way the widget does: a session token from ``POST /webchat/session``,
then the WebSocket ``/webchat/ws?token=…&after=0&mark=1`` (offering permessage-deflate, as browsers
do: a server that took it would keep a compressor per socket), ready once its ``caught_up`` frame arrives.
The per-address limits of the public endpoints are raised for the run through the product's own
settings (``PUBLIC_RATE_PER_MIN``, ``PUBLIC_BURST``; and ``FLOOD_*`` so no conversation is throttled).
Then members write at a steady ``--rate`` messages/s in all, spread round-robin over the sockets, for
``--seconds``, open loop (a message is sent on time whatever the answers).

Printed: the time to open the sockets (in all, and p50/p99 per socket, token and handshake); the RSS of
the web process (from /proc) before and after opening them, so the memory added per open socket; the
time from sending a message to its ``ack`` frame (accepted, durable) and to the responder's answer on
the same socket (the reply a member waits for), p50/p99; next to the issue's targets: 10,000 open
sockets under 200 MiB of added RSS, reply p99 under 50 ms at 100 messages/s.
``serve`` runs its worker (router, dispatcher) at idle CPU priority, so on a machine busy with other work
the replies wait for spare CPU while acceptance does not: the load average is printed with the figures.
Every connection goes to 127.0.0.1 only. The bench raises its own RLIMIT_NOFILE to the hard limit;
the product's processes inherit it.

    .venv/bin/python bench/webchat.py --sockets 1000 --rate 100 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import free_port, wait_http  # noqa: E402

TARGET_SOCKETS = 10_000
TARGET_RSS_MIB = 200.0
TARGET_RATE = 100.0
TARGET_REPLY_P99_MS = 50.0
TEXT = "Bonjour, où en est mon remboursement ?"


def raise_nofile(needed: int) -> int:
    """Raises this process's open-file limit to the hard limit (children inherit it); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        soft = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise SystemExit(
            f"{needed} open files needed, the hard limit is {soft}: raise it (ulimit -Hn, limits.conf) or open "
            "fewer sockets"
        )
    return soft


def web_pid(root_pid: int, timeout: float = 30.0) -> int:
    """The pid of ``serve``'s web child (``run.py web``), from /proc."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            if ppid == root_pid and any(a.endswith(b"run.py") for a in argv) and b"web" in argv:
                return int(entry)
        time.sleep(0.1)
    raise RuntimeError("the product's web process was not found")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def pct(data: list[float], p: float) -> float:
    ordered = sorted(data)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else float("nan")


@dataclass
class Stats:
    connect_ms: list[float] = field(default_factory=list)
    connect_errors: dict[str, int] = field(default_factory=dict)
    accepted_ms: list[float] = field(default_factory=list)  # send -> ack frame
    reply_ms: list[float] = field(default_factory=list)  # send -> the responder's answer
    frame_errors: dict[str, int] = field(default_factory=dict)
    send_errors: int = 0
    closed_early: int = 0

    def count(self, table: dict[str, int], key: str) -> None:
        table[key] = table.get(key, 0) + 1


class Chat:
    """One widget: its socket, the messages it sent and awaits an answer to, in order."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, stats: Stats, sent: dict[str, float]) -> None:
        self.ws = ws
        self.stats = stats
        self.sent = sent  # client id -> send time, for the ack frames (shared by every chat)
        self.awaiting: deque[float] = deque()  # send times waiting for the responder's answer
        self.caught_up = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        async for frame in self.ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                continue
            now = loop.time()
            data = json.loads(frame.data)
            kind = data.get("type")
            if kind == "caught_up":
                self.caught_up.set()
            elif kind == "ack":
                at = self.sent.pop(str(data.get("client_id")), None)
                if at is not None:
                    self.stats.accepted_ms.append((now - at) * 1000)
            elif kind == "message" and self.awaiting:
                # One answer per message, in order, on a session of its own: the oldest waiting one.
                self.stats.reply_ms.append((now - self.awaiting.popleft()) * 1000)
            elif kind == "error":
                self.stats.count(self.stats.frame_errors, str(data.get("code")))
        if not self.caught_up.is_set() or self.awaiting:
            self.stats.closed_early += 1
        self.caught_up.set()  # nobody waits on a closed socket

    async def send(self, sent_at: float) -> None:
        client_id = uuid.uuid4().hex
        self.sent[client_id] = sent_at
        self.awaiting.append(sent_at)
        try:
            await self.ws.send_str(json.dumps({"type": "message", "client_id": client_id, "text": TEXT}))
        except (ConnectionError, aiohttp.ClientError, RuntimeError):
            self.sent.pop(client_id, None)
            self.awaiting.pop()
            self.stats.send_errors += 1


async def open_chat(session: aiohttp.ClientSession, base: str, stats: Stats, sent: dict[str, float]) -> Chat | None:
    """The widget's start: a token, then the socket (``after=0&mark=1``). None when refused."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    try:
        # A browser opens its WebSocket on a connection of its own, never on the fetch's keep-alive one
        # (which the server closes once idle): ``close`` keeps the pool from handing that one over.
        headers = {"Origin": base, "Connection": "close"}
        async with session.post(f"{base}/webchat/session", headers=headers) as resp:
            if resp.status != 200:
                stats.count(stats.connect_errors, f"session {resp.status}")
                return None
            token = (await resp.json())["token"]
        ws = await session.ws_connect(
            f"{base.replace('http', 'ws', 1)}/webchat/ws", params={"token": token, "after": "0", "mark": "1"},
            origin=base, autoping=True, compress=15,  # offers permessage-deflate, as browsers do
        )  # fmt: skip
    except aiohttp.WSServerHandshakeError as exc:
        stats.count(stats.connect_errors, f"socket {exc.status}")
        return None
    except (aiohttp.ClientError, OSError) as exc:
        stats.count(stats.connect_errors, type(exc).__name__)
        return None
    stats.connect_ms.append((loop.time() - t0) * 1000)
    return Chat(ws, stats, sent)


async def open_all(
    session: aiohttp.ClientSession, base: str, n: int, concurrency: int, stats: Stats, sent: dict[str, float]
) -> list[Chat]:
    """Opens ``n`` chats, ``concurrency`` at a time (members arrive, they do not all press at once:
    this also keeps the listen backlog from overflowing into SYN retries)."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> Chat | None:
        async with gate:
            return await open_chat(session, base, stats, sent)

    chats = [c for c in await asyncio.gather(*(one() for _ in range(n))) if c is not None]
    await asyncio.wait_for(asyncio.gather(*(c.caught_up.wait() for c in chats)), timeout=120)
    return chats


async def write_steadily(chats: list[Chat], rate: float, seconds: float) -> int:
    """Open loop: message i goes to chat i mod N at start + i / rate. Returns the messages sent."""
    loop = asyncio.get_running_loop()
    total = max(1, int(rate * seconds))
    start = loop.time()
    for i in range(total):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await chats[i % len(chats)].send(start + i / rate)  # late sends count their lateness
    return total


async def wait_answers(chats: list[Chat], sent: dict[str, float], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (sent or any(c.awaiting for c in chats)):
        await asyncio.sleep(0.05)


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sockets", type=int, default=1000, help="web-chat sockets to open (default 1000)")
    ap.add_argument("--rate", type=float, default=TARGET_RATE, help="messages per second, all sockets together")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long members write at --rate")
    ap.add_argument("--connect-concurrency", type=int, default=100, help="sockets being opened at once")
    args = ap.parse_args()
    if args.sockets < 1 or args.rate <= 0 or args.seconds <= 0:
        ap.error("--sockets, --rate and --seconds must be positive")

    # One descriptor per socket on each side (this process, the web process), plus Redis, logs, ...
    nofile = raise_nofile(args.sockets + args.connect_concurrency + 256)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    work = Path(tempfile.mkdtemp(prefix="bench-webchat-"))
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "VAR_DIR": str(work / "var"),
           "SMTP_LISTEN_PORT": str(free_port()), "RESPONDER": "ack", "SECRET_KEY": "bench-webchat",
           "LOG_LEVEL": "WARNING",
           # Every socket comes from 127.0.0.1: one token and one socket each within the burst.
           "PUBLIC_RATE_PER_MIN": str(60 * 100_000), "PUBLIC_BURST": str(2 * args.sockets + 1000),
           # A member writing faster than a person could is throttled; not the point here.
           "FLOOD_PER_MIN": str(60 * 100_000), "FLOOD_BURST": "1000000"}  # fmt: skip
    for name in ("REDIS_URL", "PUBLIC_URL", "WEBCHAT_ALLOWED_ORIGINS", "TRUSTED_PROXY_HOPS"):
        env.pop(name, None)
    log = (work / "product.log").open("ab")
    product = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), "serve"], env=env, stdout=log, stderr=log, cwd=ROOT
    )
    stats = Stats()
    sent: dict[str, float] = {}
    chats: list[Chat] = []
    print(f"web-chat benchmark: {args.sockets} sockets, then {args.rate:.0f} messages/s for {args.seconds:.0f} s "
          f"spread over them, acknowledging responder; {os.cpu_count()} CPU cores; RLIMIT_NOFILE {nofile}; "
          "127.0.0.1 only")  # fmt: skip
    try:
        await wait_http(f"{base}/healthz", timeout=120)
        web = web_pid(product.pid)
        limit = args.sockets + args.connect_concurrency + 8
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit)) as session:
            # Warm-up: one chat through a whole exchange, so code paths and pools exist before the baseline.
            warm = await open_chat(session, base, Stats(), {})
            if warm is None:
                raise SystemExit(f"the warm-up socket was refused (product log: {work / 'product.log'})")
            await warm.caught_up.wait()
            await warm.send(asyncio.get_running_loop().time())
            await wait_answers([warm], warm.sent, timeout=30)
            await warm.ws.close()
            await warm.reader

            rss0 = rss_kib(web)
            t0 = time.monotonic()
            chats = await open_all(session, base, args.sockets, args.connect_concurrency, stats, sent)
            opened_s = time.monotonic() - t0
            rss1 = rss_kib(web)

            total = await write_steadily(chats, args.rate, args.seconds) if chats else 0
            await wait_answers(chats, sent)
            unanswered = sum(len(c.awaiting) for c in chats)
            rss2 = rss_kib(web)
            await asyncio.gather(*(c.ws.close() for c in chats), return_exceptions=True)
            await asyncio.gather(*(c.reader for c in chats), return_exceptions=True)
    finally:
        product.send_signal(signal.SIGINT)
        try:
            product.wait(timeout=60)
        except subprocess.TimeoutExpired:
            product.kill()
        log.close()

    n = len(chats)
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"{'machine':<10} load average {' / '.join(load)} (1 / 5 / 15 min) on {os.cpu_count()} cores at the end")
    added_mib = (rss1 - rss0) / 1024
    per_socket_kib = (rss1 - rss0) / n if n else float("nan")
    at_target = per_socket_kib * TARGET_SOCKETS / 1024
    print(f"{'connect':<10} {n}/{args.sockets} sockets open in {opened_s:.2f} s ({n / opened_s:.0f}/s, "
          f"{args.connect_concurrency} at a time); per socket (token + handshake) p50={pct(stats.connect_ms, 50):.1f} ms "
          f"p99={pct(stats.connect_ms, 99):.1f} ms" + (f"  refused={stats.connect_errors}" if stats.connect_errors else ""))  # fmt: skip
    print(f"{'memory':<10} web process RSS {rss0 / 1024:.1f} MiB before, {rss1 / 1024:.1f} MiB with the sockets open: "
          f"+{added_mib:.1f} MiB, {per_socket_kib:.1f} KiB per socket; {rss2 / 1024:.1f} MiB after the messages")  # fmt: skip
    verdict = "meets" if at_target < TARGET_RSS_MIB else "misses"
    scaled = "" if n == TARGET_SOCKETS else f" (extrapolated from {n})"
    print(f"{'':<10} {TARGET_SOCKETS:,} sockets at this rate: {at_target:.0f} MiB{scaled}; target < "
          f"{TARGET_RSS_MIB:.0f} MiB added: {verdict}")  # fmt: skip
    print(f"{'messages':<10} {total} sent at {args.rate:.0f}/s over {n} sockets, {len(stats.accepted_ms)} acknowledged, "
          f"{len(stats.reply_ms)} answered" + (f", {unanswered} unanswered after 60 s" if unanswered else "")
          + (f"  send errors={stats.send_errors}" if stats.send_errors else "")
          + (f"  error frames={stats.frame_errors}" if stats.frame_errors else "")
          + (f"  sockets closed early={stats.closed_early}" if stats.closed_early else ""))  # fmt: skip
    print(f"{'accepted':<10} send -> ack frame (durable in the inbound stream)   p50={pct(stats.accepted_ms, 50):6.1f} ms  "
          f"p99={pct(stats.accepted_ms, 99):6.1f} ms")  # fmt: skip
    p99 = pct(stats.reply_ms, 99)
    verdict = "meets" if p99 < TARGET_REPLY_P99_MS else "misses"
    at_rate = "" if args.rate == TARGET_RATE else f" (target stated at {TARGET_RATE:.0f}/s, run at {args.rate:.0f}/s)"
    print(f"{'reply':<10} send -> the responder's answer on the socket       p50={pct(stats.reply_ms, 50):6.1f} ms  "
          f"p99={p99:6.1f} ms; target p99 < {TARGET_REPLY_P99_MS:.0f} ms: {verdict}{at_rate}")  # fmt: skip
    return 0 if n == args.sockets and not unanswered else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
