#!/usr/bin/env python3
"""Ingest benchmark: signed Twilio SMS webhooks from N concurrent clients.

Runs, in the same run and on the same machine, against
  1. ``run.py serve`` (the real product: private redis-server, router and dispatcher running,
     replies sent to a loopback Twilio API), and
  2. a bare aiohttp handler that only answers 200,
and prints accepted messages/s and p50/p99 time to response for both, and the ratios.
Every request goes to 127.0.0.1 only.

    .venv/bin/python bench/ingest.py --clients 64 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parent.parent
SID = "AC" + "0" * 32
TOKEN = "benchmark-auth-token"


CLK_TCK = os.sysconf("SC_CLK_TCK")


def _proc_table() -> dict[int, tuple[int, str, float]]:
    """pid -> (parent pid, command name, CPU seconds used so far), from /proc."""
    table: dict[int, tuple[int, str, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        rest = raw[raw.rindex(")") + 2 :].split()
        table[int(entry)] = (int(rest[1]), cmdline, (int(rest[11]) + int(rest[12])) / CLK_TCK)
    return table


def cpu_by_role(root_pid: int) -> dict[str, float]:
    """CPU seconds of a process tree, by role (web, worker, redis-server, ...)."""
    table = _proc_table()
    tree = {root_pid}
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _, _) in table.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                changed = True
    out: dict[str, float] = {}
    for pid in tree:
        if pid not in table:
            continue
        _, cmd, cpu = table[pid]
        role = "redis" if "redis-server" in cmd else cmd.split()[-1] if "run.py" in cmd else "other"
        out[role] = out.get(role, 0.0) + cpu
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Result:
    name: str
    ok: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    failures: dict[object, int]
    accepted_total: int = 0

    @property
    def rate(self) -> float:
        return self.ok / self.seconds

    def pct(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, int(p / 100 * len(data)))]


async def load(url: str, public_url: str, clients: int, seconds: float, warmup: float) -> Result:
    validator = RequestValidator(TOKEN)
    latencies: list[float] = []
    ok = errors = 0
    accepted_total = 0
    counter = 0
    statuses: dict[object, int] = {}
    loop = asyncio.get_running_loop()
    start = loop.time()
    measure_from = start + warmup
    end = measure_from + seconds

    async def client(n: int, session: aiohttp.ClientSession) -> None:
        nonlocal ok, errors, counter, accepted_total
        while loop.time() < end:
            counter += 1
            params = {
                "MessageSid": f"SM{n:04d}{counter:026d}",
                "SmsSid": f"SM{n:04d}{counter:026d}",
                "AccountSid": SID,
                "From": f"+336{10000000 + (counter % 5000):08d}",
                "To": "+33700000000",
                "Body": "Bonjour, où en est mon remboursement ?",
                "NumMedia": "0",
                "NumSegments": "1",
            }
            signature = validator.compute_signature(public_url, params)
            body = urllib.parse.urlencode(params)
            t0 = loop.time()
            try:
                async with session.post(
                    url,
                    data=body,
                    headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
                ) as resp:
                    await resp.read()
                    good = resp.status == 200
                    if not good:
                        statuses[resp.status] = statuses.get(resp.status, 0) + 1
            except aiohttp.ClientError as exc:
                good = False
                statuses[type(exc).__name__] = statuses.get(type(exc).__name__, 0) + 1
            t1 = loop.time()
            accepted_total += good
            if t0 >= measure_from and t1 <= end:
                if good:
                    ok += 1
                    latencies.append((t1 - t0) * 1000)
                else:
                    errors += 1

    conn = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=conn) as session:
        await asyncio.gather(*(client(i, session) for i in range(clients)))
    return Result("", ok, errors, seconds, latencies, statuses, accepted_total)


SENT = {"count": 0}


async def fake_twilio_api(port: int) -> web.AppRunner:
    """Loopback Twilio Messages API: accepts every message the product sends."""

    async def create(request: web.Request) -> web.Response:
        SENT["count"] += 1
        count = SENT["count"]
        form = await request.post()
        return web.json_response(
            {
                "sid": f"SMbench{count:027d}",
                "status": "queued",
                "to": form.get("To"),
                "from": form.get("From"),
                "body": form.get("Body"),
                "num_segments": "1",
                "account_sid": SID,
            },
            status=201,
        )

    app = web.Application()
    app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", create)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


def bare_server(port: int) -> None:
    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="<Response/>", content_type="text/xml")

    app = web.Application()
    app.router.add_post("/sms/twilio/inbound", ok)
    # The same event loop as the product's roles, so the ratio compares like with like.
    import uvloop

    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, loop=uvloop.new_event_loop())


async def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as resp:
                    if resp.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def show(res: Result, clients: int) -> str:
    return (
        f"{res.name:<22} clients={clients:<3} accepted/s={res.rate:8.1f}  p50={res.pct(50):6.2f} ms  "
        f"p99={res.pct(99):6.2f} ms  errors={res.errors} {res.failures or ''}"
    )


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, nargs="+", default=[64])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--bare-server", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()

    product_port, bare_port, api_port, smtp_port = free_port(), free_port(), free_port(), free_port()
    api = await fake_twilio_api(api_port)
    var_dir = tempfile.mkdtemp(prefix="bench-ingest-")
    env = {
        **os.environ,
        "PORT": str(product_port),
        "VAR_DIR": var_dir,
        "SMTP_LISTEN_PORT": str(smtp_port),
        "TWILIO_ACCOUNT_SID": SID,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "TWILIO_FROM": "+33700000000",
        "TWILIO_API_BASE": f"http://127.0.0.1:{api_port}",
        "SMS_RATE_PER_S": "100000",
        "RESPONDER": "ack",  # ingest and the reply pipeline; the bot has its own benchmark
    }
    env.pop("REDIS_URL", None)
    product = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(os.environ.get("BENCH_PRODUCT_LOG", os.devnull), "wb"),
    )
    bare = subprocess.Popen([sys.executable, __file__, "--bare-server", str(bare_port)], stdout=subprocess.DEVNULL)
    try:
        await wait_http(f"http://127.0.0.1:{product_port}/healthz")
        await wait_http(f"http://127.0.0.1:{bare_port}/sms/twilio/inbound")
        public = f"http://127.0.0.1:{product_port}/sms/twilio/inbound"
        print(f"ingest benchmark: {args.seconds:.0f} s per run after {args.warmup:.0f} s warm-up, 127.0.0.1 only")
        for clients in args.clients:
            bare_res = await load(
                f"http://127.0.0.1:{bare_port}/sms/twilio/inbound", public, clients, args.seconds, args.warmup
            )
            bare_res.name = "bare aiohttp handler"
            cpu0 = cpu_by_role(product.pid)
            sent_before = SENT["count"]
            load_started = time.monotonic()
            prod_res = await load(public, public, clients, args.seconds, args.warmup)
            load_ended = time.monotonic()
            cpu1 = cpu_by_role(product.pid)
            # Every accepted message gets its reply: wait until the loopback Twilio API saw them all.
            while SENT["count"] - sent_before < prod_res.accepted_total and time.monotonic() - load_ended < 120:
                await asyncio.sleep(0.05)
            drained = time.monotonic()
            prod_res.name = "run.py serve (SMS)"
            print(show(bare_res, clients))
            print(show(prod_res, clients))
            print(
                f"{'ratio product/bare':<22} clients={clients:<3} rate={prod_res.rate / bare_res.rate:6.1%}  "
                f"p99 product={prod_res.pct(99):.2f} ms (target: rate >= 50 %, p99 < 50 ms at 64 clients)"
            )
            if prod_res.latencies_ms:
                print(f"{'':<22} mean={statistics.fmean(prod_res.latencies_ms):.2f} ms")
            replied = SENT["count"] - sent_before
            print(
                f"{'replies':<22} {replied}/{prod_res.accepted_total} accepted messages answered; last reply "
                f"{drained - load_ended:.1f} s after the load stopped; end to end "
                f"{replied / (drained - load_started):.0f} messages/s answered"
            )
            total = args.seconds + args.warmup
            used = {k: cpu1.get(k, 0.0) - cpu0.get(k, 0.0) for k in cpu1}
            shares = "  ".join(f"{k}={v / total:.0%}" for k, v in sorted(used.items()) if v > 0.01)
            print(f"{'CPU of the product':<22} (share of one core during the run) {shares}")
    finally:
        product.send_signal(signal.SIGINT)
        bare.send_signal(signal.SIGINT)
        for proc in (product, bare):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        await api.cleanup()
    return 0


if __name__ == "__main__":
    if "--bare-server" in sys.argv:
        bare_server(int(sys.argv[sys.argv.index("--bare-server") + 1]))
    else:
        raise SystemExit(asyncio.run(main()))
