#!/usr/bin/env python3
"""Records API benchmark: the back office upserts N claims in bulk through ``run.py serve``.

Starts the real product (private redis-server, web and worker processes, the acknowledging responder:
the bot plays no part in writing records) on a fresh ``VAR_DIR``, so it loads its 500 synthetic members
(M0100000 to M0100499); creates a write key with ``run.py apikey create``; then posts ``--claims`` claims
spread over those members as NDJSON to ``POST /api/v1/records/bulk``, ``--per-request`` lines a request,
``--concurrency`` requests at once. Printed: records/s for the first pass (every claim stored: validated,
version-checked, written, audited) and for the same requests again (every claim ``unchanged``: the
idempotent replay), with the per-request p50/p99. Every connection goes to 127.0.0.1 only.

    .venv/bin/python bench/records_api.py --claims 10000 --per-request 5000
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
MEMBERS = 500


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit(f"{url} not ready in {timeout:.0f} s")


def claim_lines(n: int, version: int) -> list[bytes]:
    out = []
    for i in range(n):
        paid = i % 3 == 0
        record = {
            "id": f"BC{i:08d}", "member": f"M{100000 + i % MEMBERS:07d}", "care_date": "2026-11-02",
            "kind": "consultation", "amount_eur": f"{25 + i % 50},00", "reimbursed_eur": "17,50" if paid else "",
            "status": "paid" if paid else "in_progress", "payment_date": "2026-11-20" if paid else "",
            "teletransmitted": i % 2 == 0,
        }  # fmt: skip
        out.append(orjson.dumps({"kind": "claims", "version": version, "record": record}))
    return out


async def post_all(base: str, token: str, lines: list[bytes], per_request: int, concurrency: int) -> tuple[float, list[float], dict[str, int]]:
    bodies = [b"\n".join(lines[i : i + per_request]) + b"\n" for i in range(0, len(lines), per_request)]
    gate = asyncio.Semaphore(concurrency)
    times: list[float] = []
    counts: dict[str, int] = {}
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}

    async def one(session: aiohttp.ClientSession, body: bytes) -> None:
        async with gate:
            t0 = time.perf_counter()
            async with session.post(f"{base}/api/v1/records/bulk", data=body, headers=headers) as resp:
                text = await resp.read()
                if resp.status != 200:
                    raise SystemExit(f"bulk answered {resp.status}: {text[:300]!r}")
            times.append(time.perf_counter() - t0)
            for line in text.splitlines():
                status = orjson.loads(line)["status"]
                counts[status] = counts.get(status, 0) + 1

    t0 = time.perf_counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        await asyncio.gather(*(one(session, b) for b in bodies))
    return time.perf_counter() - t0, times, counts


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--claims", type=int, default=10_000)
    ap.add_argument("--per-request", type=int, default=5_000, help="NDJSON lines per bulk request")
    ap.add_argument("--concurrency", type=int, default=2, help="bulk requests at once")
    args = ap.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    work = Path(tempfile.mkdtemp(prefix="bench-records-"))
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "VAR_DIR": str(work / "var"),
           "SMTP_LISTEN_PORT": str(free_port()), "RESPONDER": "ack", "SECRET_KEY": "bench-records",
           "LOG_LEVEL": "WARNING", "API_RATE_PER_S": "1000", "API_BURST": "1000"}  # fmt: skip
    env.pop("REDIS_URL", None)
    log = (work / "product.log").open("ab")
    product = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "serve"], env=env, stdout=log, stderr=log,
                               cwd=ROOT)  # fmt: skip
    print(f"records API benchmark: {args.claims} claims over {MEMBERS} members, {args.per_request} lines a request, "
          f"{args.concurrency} at once; {os.cpu_count()} CPU cores; 127.0.0.1 only")  # fmt: skip
    try:
        await wait_http(f"{base}/healthz", timeout=180)
        made = subprocess.run([sys.executable, str(ROOT / "run.py"), "apikey", "create", "bench", "--scope", "write"],
                              env=env, cwd=ROOT, capture_output=True, text=True, check=True)  # fmt: skip
        token = made.stdout.strip().splitlines()[-1]
        lines = claim_lines(args.claims, version=1)
        for label, version in (("stored", 1), ("replayed", 1), ("next version", 2)):
            if version != 1:
                lines = claim_lines(args.claims, version=version)
            elapsed, times, counts = await post_all(base, token, lines, args.per_request, args.concurrency)
            p50 = statistics.median(times) * 1000
            p99 = sorted(times)[min(len(times) - 1, math.ceil(len(times) * 0.99) - 1)] * 1000
            print(f"{label:<13} {args.claims / elapsed:>8,.0f} records/s  ({elapsed:.2f} s; per request p50 "
                  f"{p50:.0f} ms, p99 {p99:.0f} ms; {', '.join(f'{n} {s}' for s, n in sorted(counts.items()))})")
    finally:
        product.send_signal(signal.SIGINT)
        try:
            product.wait(timeout=60)
        except subprocess.TimeoutExpired:
            product.kill()
        log.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
