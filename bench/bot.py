#!/usr/bin/env python3
"""Bot benchmark: reply latency through the gateway versus straight to Rasa, in one run.

Starts ``run.py serve`` (which builds/trains if needed and starts its Rasa server, trackers in
Redis), then, one message at a time:
  1. straight to Rasa's REST channel (``POST /webhooks/rest/webhook``);
  2. through the gateway: a signed Twilio SMS webhook in, until the reply reaches the loopback
     Twilio API (accept, stream, router, Rasa, outbound stream, dispatcher, send).
Then the same two paths with ``--concurrency`` members writing at once, for throughput
(answers per second). Prints p50/p99 of both and what the gateway adds, the product's start
time (Redis, Rasa and its action server, web, worker) and, unless ``--skip-train``, the time to
train the bot from scratch. 127.0.0.1 only.

    .venv/bin/python bench/bot.py --messages 200 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import SID, TOKEN, free_port  # noqa: E402
from tests.fakes.twilio import inbound_params, signed_inbound  # noqa: E402

TEXTS = ["bjr", "quel est le délai de remboursement", "ou en est mon rembourssement", "merci bcp"]


def train_from_scratch() -> float:
    """Training time of the bot's current files, into a scratch folder (the cached model is untouched)."""
    with tempfile.TemporaryDirectory(prefix="bench-train-") as out:
        t0 = time.perf_counter()
        subprocess.run(
            [str(ROOT / "bot" / ".venv" / "bin" / "rasa"), "train", "--out", out],
            cwd=ROOT / "bot",
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # A scratch component cache too: Rasa would otherwise reuse the components it trained before.
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "RASA_CACHE_DIRECTORY": str(Path(out) / "cache")},
        )
        return time.perf_counter() - t0


def pct(data: list[float], p: float) -> float:
    data = sorted(data)
    return data[min(len(data) - 1, int(p / 100 * len(data)))]


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--skip-train", action="store_true")
    args = ap.parse_args()
    train_s = None if args.skip_train else train_from_scratch()

    replies: dict[str, asyncio.Future[float]] = {}

    async def create(request: web.Request) -> web.Response:
        form = await request.post()
        fut = replies.get(str(form.get("To")))
        if fut is not None and not fut.done():
            fut.set_result(time.perf_counter())
        return web.json_response({"sid": f"SM{time.time_ns():030d}"[:34], "status": "queued"}, status=201)

    api = web.Application()
    api.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", create)
    runner = web.AppRunner(api, access_log=None)
    await runner.setup()
    api_port, port = free_port(), free_port()
    await web.TCPSite(runner, "127.0.0.1", api_port).start()

    env = {
        **os.environ,
        "PORT": str(port),
        "SMTP_LISTEN_PORT": str(free_port()),
        "VAR_DIR": tempfile.mkdtemp(prefix="bench-bot-"),
        "RESPONDER": "rasa",
        "TWILIO_ACCOUNT_SID": SID,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "TWILIO_FROM": "+33700000000",
        "TWILIO_API_BASE": f"http://127.0.0.1:{api_port}",
        "SMS_RATE_PER_S": "1000",
    }
    env.pop("REDIS_URL", None)
    env.pop("RASA_URL", None)
    started = time.perf_counter()
    product = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=Path(env["VAR_DIR"], "product.log").open("wb"),
    )
    assert product.stdout is not None
    rasa_url = ""
    while True:
        line = (await asyncio.to_thread(product.stdout.readline)).decode()
        if not line:
            raise SystemExit("run.py serve exited")
        found = re.search(r"Bot \(Rasa\)\s*: (\S+)", line)
        if found:
            rasa_url = found.group(1)
        if line.startswith("Ctrl-C"):
            break
    start_s = time.perf_counter() - started
    public = f"http://127.0.0.1:{port}/sms/twilio/inbound"
    direct: list[float] = []
    via: list[float] = []
    seq = iter(range(10**9))

    async def ask_rasa(session: aiohttp.ClientSession, text: str) -> float:
        t0 = time.perf_counter()
        body = {"sender": f"direct-{next(seq)}", "message": text}
        async with session.post(f"{rasa_url}/webhooks/rest/webhook", json=body) as resp:
            await resp.read()
        return (time.perf_counter() - t0) * 1000

    async def ask_gateway(session: aiohttp.ClientSession, text: str) -> float:
        member = f"+3319900{next(seq) % 10000:04d}"  # a new member each time, like the direct path
        waiter = replies[member] = asyncio.get_running_loop().create_future()
        headers, body = signed_inbound(public, "", TOKEN, inbound_params(member, text, to="+33700000000"))
        t0 = time.perf_counter()
        async with session.post(public, data=body, headers=headers) as resp:
            await resp.read()
            if resp.status != 200:
                raise SystemExit(f"the gateway answered {resp.status}")
        t1 = await asyncio.wait_for(waiter, timeout=60)
        replies.pop(member, None)
        return (t1 - t0) * 1000

    async def throughput(session: aiohttp.ClientSession, ask: Any) -> float:
        per_worker = max(1, args.messages // args.concurrency)

        async def worker(w: int) -> None:
            for i in range(per_worker):
                await ask(session, TEXTS[(w + i) % len(TEXTS)])

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(args.concurrency)))
        return per_worker * args.concurrency / (time.perf_counter() - t0)

    try:
        async with aiohttp.ClientSession() as session:
            for i in range(args.messages):  # one at a time, alternating paths
                text = TEXTS[i % len(TEXTS)]
                direct.append(await ask_rasa(session, text))
                via.append(await ask_gateway(session, text))
            direct_rate = await throughput(session, ask_rasa)
            via_rate = await throughput(session, ask_gateway)
    finally:
        product.send_signal(signal.SIGINT)
        product.wait(timeout=60)
        print(f"(product logs in {env['VAR_DIR']})")
        await runner.cleanup()
    print(f"bot benchmark: {args.messages} messages one at a time, 127.0.0.1 only")
    if train_s is not None:
        print(f"  training the bot from scratch: {train_s:.0f} s")
    print(f"  run.py serve ready (Redis, Rasa + actions, web, worker) in {start_s:.1f} s (venv and model cached)")
    print(f"  straight to Rasa REST      p50={pct(direct, 50):6.1f} ms  p99={pct(direct, 99):6.1f} ms")
    print(f"  through the gateway (SMS)  p50={pct(via, 50):6.1f} ms  p99={pct(via, 99):6.1f} ms")
    added = pct(via, 50) - pct(direct, 50)
    print(f"  gateway adds {added:.1f} ms at p50 ({added / pct(direct, 50):.0%} of Rasa's own time; target <= 10 %)")
    print(
        f"  throughput, {args.concurrency} members at once: straight to Rasa {direct_rate:.0f} answers/s, "
        f"through the gateway {via_rate:.0f} answers/s ({via_rate / direct_rate:.0%})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
