#!/usr/bin/env python3
"""Scale benchmark: inbound SMS throughput and reply latency with 1, 2 and 4 worker processes, on one
Redis or on a 3-master Redis Cluster, side by side, on this machine.

Each configuration runs the product as separate processes sharing Redis: one ``run.py gateway`` (the
webhooks) and N ``run.py worker`` (router, dispatcher, scheduler), ``STREAM_SHARDS=4``, the
acknowledging responder (the bot's own cost is measured by ``bench/bot.py``), replies sent to a
loopback Twilio API. Signed SMS webhooks come from ``--clients`` concurrent clients for ``--seconds``,
each from a new number (a new conversation), so a reply's latency is the time from the webhook's 200
to that number's reply reaching the Twilio API. Printed per configuration: accepted/s, answered/s,
reply p50/p99 (queueing, as the load is above what it answers), the CPU share of each part (gateway,
workers, Redis) and, from those shares, what saturates. Then (``--paced``, 0.7 by default) new numbers
write at a steady 70 % of the rate each configuration answered, open loop, for the reply p50/p99 a member
sees at a load the configuration sustains.
Every request goes to 127.0.0.1 only.

    .venv/bin/python bench/scale.py --seconds 10 --workers 1 2 4 --masters 1 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import CLK_TCK, SID, TOKEN, free_port, wait_http  # noqa: E402
from gateway.redis_server import PrivateRedis  # noqa: E402
from tests.cluster.local_cluster import LocalCluster  # noqa: E402

SHARDS = 4


@dataclass
class Run:
    workers: int
    masters: int
    accepted: int = 0
    errors: int = 0
    seconds: float = 0.0
    answered: int = 0
    drain_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # cores used on average, by part
    cpu_ms: dict[str, float] = field(default_factory=dict)  # CPU milliseconds per message answered, by part
    paced_rate: float = 0.0
    paced_sent: int = 0
    paced_errors: int = 0
    paced_ms: list[float] = field(default_factory=list)

    @property
    def answered_per_s(self) -> float:
        """Replies per second over the load and the drain that followed it."""
        return self.answered / (self.seconds + self.drain_s)

    def saturates(self, cores: int) -> str:
        """What limits this configuration, from the CPU each part used while clients waited on it."""
        used = sum(self.cpu.values())
        workers, redis = self.cpu.get("workers", 0.0), self.cpu.get("redis", 0.0)
        if used >= 0.85 * cores:
            most = max(self.cpu, key=lambda k: self.cpu[k]) if self.cpu else "workers"
            return f"the machine's CPU ({used:.1f} of {cores} cores busy, most in {most})"
        if workers >= 0.85 * self.workers:
            return f"worker CPU (each of {self.workers} worker process(es) on one core): add workers or machines"
        if redis >= 0.85 * self.masters:
            return f"Redis CPU ({redis:.2f} cores over {self.masters} master(s)): add masters"
        return f"none by CPU ({used:.1f} of {cores} cores): round trips between clients, gateway and Redis"

    def pct(self, p: float, data: list[float] | None = None) -> float:
        ordered = sorted(self.latencies_ms if data is None else data)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else float("nan")


class Twilio:
    """Loopback Messages API: records when each number's first reply arrives."""

    def __init__(self) -> None:
        self.first: dict[str, float] = {}

    async def start(self, port: int) -> web.AppRunner:
        async def create(request: web.Request) -> web.Response:
            form = await request.post()
            to = str(form.get("To"))
            self.first.setdefault(to, time.monotonic())
            n = len(self.first)
            return web.json_response(
                {"sid": f"SMscale{n:028d}", "status": "queued", "to": to, "account_sid": SID, "num_segments": "1"},
                status=201,
            )

        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", create)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner


def cpu_seconds(pids: dict[str, list[int]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for role, ids in pids.items():
        for pid in ids:
            try:
                rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[role] = out.get(role, 0.0) + (int(rest[11]) + int(rest[12])) / CLK_TCK
    return out


def sms_request(url: str, validator: RequestValidator, sender: str, sid: str) -> tuple[str, dict[str, str]]:
    """A signed Twilio SMS webhook from ``sender``: the form body and its headers."""
    params = {"MessageSid": sid, "SmsSid": sid, "AccountSid": SID, "From": sender, "To": "+33700000000",
              "Body": "Bonjour, où en est mon remboursement ?", "NumMedia": "0", "NumSegments": "1"}  # fmt: skip
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "X-Twilio-Signature": validator.compute_signature(url, params)}  # fmt: skip
    return urllib.parse.urlencode(params), headers


async def post(session: aiohttp.ClientSession, url: str, body: str, headers: dict[str, str]) -> bool:
    try:
        async with session.post(url, data=body, headers=headers) as resp:
            await resp.read()
            return resp.status == 200
    except aiohttp.ClientError:
        return False


async def drive(url: str, clients: int, seconds: float, accepted_at: dict[str, float], run: Run, tag: int) -> None:
    """Closed loop: ``clients`` clients each send the next SMS as soon as the last one is acknowledged."""
    validator = RequestValidator(TOKEN)
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    counter = 0

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal counter
        while loop.time() < end:
            counter += 1
            sender = f"+336{tag}{counter:07d}"
            body, headers = sms_request(url, validator, sender, f"SM{tag}{counter:031d}")
            if await post(session, url, body, headers):
                accepted_at[sender] = time.monotonic()
                run.accepted += 1
            else:
                run.errors += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))


async def paced(url: str, rate: float, seconds: float, accepted_at: dict[str, float], tag: int) -> int:
    """Open loop: one SMS every 1/``rate`` s whatever the answers, as members write; returns the errors."""
    validator = RequestValidator(TOKEN)
    loop = asyncio.get_running_loop()
    errors = 0

    async def one_sms(session: aiohttp.ClientSession, i: int) -> None:
        nonlocal errors
        sender = f"+337{tag}{i:07d}"
        body, headers = sms_request(url, validator, sender, f"SP{tag}{i:031d}")
        if await post(session, url, body, headers):
            accepted_at[sender] = time.monotonic()
        else:
            errors += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000)) as session:
        start, sent = loop.time(), []
        for i in range(max(1, int(rate * seconds))):
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            sent.append(asyncio.create_task(one_sms(session, i)))
        await asyncio.gather(*sent)
    return errors


async def wait_answered(accepted_at: dict[str, float], first: dict[str, float], expected: int) -> float:
    """Waits (up to 2 minutes) until every accepted number has its reply; returns when that was."""
    start = time.monotonic()
    while time.monotonic() - start < 120 and sum(1 for s in accepted_at if s in first) < expected:
        await asyncio.sleep(0.05)
    return time.monotonic()


async def one(workers: int, masters: int, args: argparse.Namespace, twilio: Twilio, api_port: int, tag: int) -> Run:
    run = Run(workers, masters)
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    redis_pids: list[int] = []
    single: PrivateRedis | None = None
    cluster: LocalCluster | None = None
    if masters == 1:
        single = PrivateRedis(work / "redis")
        redis_url = single.start()
        redis_pids = [int((work / "redis" / "redis.pid").read_text())]
    else:
        cluster = LocalCluster(work / "cluster", masters=masters, replicas_per_master=0)
        cluster.start()
        redis_url = cluster.url
        redis_pids = [n.proc.pid for n in cluster.nodes if n.proc is not None]
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "PORT": str(port), "SMTP_LISTEN_PORT": str(free_port()),
           "VAR_DIR": str(work / "var"), "RESPONDER": "ack", "STREAM_SHARDS": str(SHARDS),
           "TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_FROM": "+33700000000",
           "TWILIO_API_BASE": f"http://127.0.0.1:{api_port}", "SMS_RATE_PER_S": "100000",
           "SECRET_KEY": "bench-scale", "LOG_LEVEL": "WARNING", "FLOOD_BURST": "1000000"}  # fmt: skip
    log = (work / "product.log").open("ab")
    procs = {"gateway": [subprocess.Popen([sys.executable, str(ROOT / "run.py"), "gateway"], env=env, stdout=log,
                                          stderr=log)],
             "workers": [subprocess.Popen([sys.executable, str(ROOT / "run.py"), "worker"], env=env, stdout=log,
                                          stderr=log) for _ in range(workers)]}  # fmt: skip
    try:
        await wait_http(f"http://127.0.0.1:{port}/healthz")
        await asyncio.sleep(1.0)  # the workers join their consumer groups
        pids = {role: [p.pid for p in ps] for role, ps in procs.items()} | {"redis": redis_pids}
        accepted_at: dict[str, float] = {}
        cpu0, t0 = cpu_seconds(pids), time.monotonic()
        await drive(f"http://127.0.0.1:{port}/sms/twilio/inbound", args.clients, args.seconds, accepted_at, run, tag)
        load_end = time.monotonic()
        run.seconds = load_end - t0
        drained = await wait_answered(accepted_at, twilio.first, run.accepted)
        cpu1 = cpu_seconds(pids)
        run.drain_s = drained - load_end
        run.answered = sum(1 for s in accepted_at if s in twilio.first)
        run.latencies_ms = [(twilio.first[s] - t) * 1000 for s, t in accepted_at.items() if s in twilio.first]
        run.cpu = {k: (cpu1.get(k, 0.0) - cpu0.get(k, 0.0)) / (drained - t0) for k in cpu1}
        run.cpu_ms = {k: (cpu1.get(k, 0.0) - cpu0.get(k, 0.0)) * 1000 / max(1, run.answered) for k in cpu1}
        if args.paced:
            # Then members writing at a steady share of what this configuration answered: the reply latency a
            # member sees at a load it sustains (the closed loop above measures queueing under overload).
            run.paced_rate = args.paced * run.answered_per_s
            at: dict[str, float] = {}
            run.paced_errors = await paced(
                f"http://127.0.0.1:{port}/sms/twilio/inbound", run.paced_rate, args.seconds, at, tag
            )
            await wait_answered(at, twilio.first, len(at))
            run.paced_sent = len(at) + run.paced_errors
            run.paced_ms = [(twilio.first[s] - t) * 1000 for s, t in at.items() if s in twilio.first]
    finally:
        for ps in procs.values():
            for p in ps:
                p.send_signal(signal.SIGTERM)
        for ps in procs.values():
            for p in ps:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
        if single is not None:
            single.stop()
        if cluster is not None:
            cluster.stop()
    return run


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--masters", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--paced", type=float, default=0.7,
                    help="then send at this share of the answered rate, open loop, for reply latency (0: skip)")  # fmt: skip
    args = ap.parse_args()
    twilio, api_port = Twilio(), free_port()
    api = await twilio.start(api_port)
    print(f"scale benchmark: {args.clients} clients, {args.seconds:.0f} s of signed SMS each, one gateway process, "
          f"{SHARDS} stream shards, acknowledging responder; {os.cpu_count()} CPU cores; 127.0.0.1 only")  # fmt: skip
    runs: list[Run] = []
    tag = 1
    try:
        for masters in args.masters:
            for workers in args.workers:
                runs.append(await one(workers, masters, args, twilio, api_port, tag))
                tag += 1
    finally:
        await api.cleanup()
    base = runs[0]
    print(f"{'redis':<11}{'workers':>8}{'accepted/s':>12}{'answered/s':>12}{'vs first':>9}{'reply p50':>11}"
          f"{'reply p99':>11}{'drain s':>9}  CPU cores, gateway / workers / redis; CPU ms per message")  # fmt: skip
    for r in runs:
        parts = ("gateway", "workers", "redis")
        cpu = " / ".join(f"{r.cpu.get(k, 0.0):.2f}" for k in parts) + "; "
        cpu += " / ".join(f"{r.cpu_ms.get(k, 0.0):.2f}" for k in parts)
        print(f"{f'{r.masters} master(s)':<11}{r.workers:>8}{r.accepted / r.seconds:>12.0f}{r.answered_per_s:>12.0f}"
              f"{r.answered_per_s / base.answered_per_s:>9.2f}{r.pct(50):>9.0f}ms{r.pct(99):>9.0f}ms{r.drain_s:>9.1f}  {cpu}"
              + (f"  errors={r.errors}" if r.errors else ""))  # fmt: skip
    cores = os.cpu_count() or 1
    print("\nwhat saturates, from the CPU each part used:")
    for r in runs:
        print(f"  {r.masters} master(s), {r.workers} worker(s): {r.saturates(cores)}")
    print("  with the bot in the loop, Rasa comes first by far: one Rasa server answers tens of turns a second "
          "(bench/bot.py) where one worker routes hundreds of messages; see docs/capacity.md")  # fmt: skip
    if args.paced:
        print(f"\nthen {args.seconds:.0f} s at {args.paced:.0%} of each configuration's answered rate, open loop "
              "(new numbers at a steady pace): the reply latency a member sees at a load it sustains")  # fmt: skip
        print(f"{'redis':<11}{'workers':>8}{'SMS/s':>8}{'sent':>7}{'answered':>10}{'reply p50':>11}{'reply p99':>11}")
        for r in runs:
            print(f"{f'{r.masters} master(s)':<11}{r.workers:>8}{r.paced_rate:>8.0f}{r.paced_sent:>7}"
                  f"{len(r.paced_ms):>10}{r.pct(50, r.paced_ms):>9.0f}ms{r.pct(99, r.paced_ms):>9.0f}ms"
                  + (f"  errors={r.paced_errors}" if r.paced_errors else ""))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
