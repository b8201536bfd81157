#!/usr/bin/env python3
"""Campaign benchmark: plan, render and enqueue for large synthetic audiences, then e-mail dispatch
through the gateway versus a bare aiosmtplib loop, in the same run. 127.0.0.1 only.

1. For each size (default 100,000 and 1,000,000): synthetic members are written to a private
   redis-server; ``schedule`` plans them (recipients/s); the templates alone render the first
   100,000 notices (recipients/s); the worker's batches claim, render and hand every notice to the
   outbound stream (recipients/s); peak memory of this process and Redis.
2. ``--mails`` campaign e-mails (default 3,000) are sent by the real dispatcher and e-mail channel
   to a loopback SMTP server (aiosmtpd, in its own process), then the same messages by a bare
   aiosmtplib loop with the same concurrency; messages/s of both and the ratio.

    .venv/bin/python bench/campaign.py --sizes 100000,1000000 --mails 3000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiosmtplib  # noqa: E402
from redis.asyncio import Redis  # noqa: E402
from redis.exceptions import ResponseError  # noqa: E402

from campaigns.engine import Campaigns  # noqa: E402
from campaigns.model import context, from_input, key  # noqa: E402
from campaigns.render import Renderer  # noqa: E402
from campaigns.rules import PARIS  # noqa: E402
from gateway import keys  # noqa: E402
from gateway.app import Gateway  # noqa: E402
from gateway.contacts import Contacts  # noqa: E402
from gateway.conversations import Conversations  # noqa: E402
from gateway.envelope import Message  # noqa: E402
from gateway.redis_client import connect  # noqa: E402
from gateway.redis_server import PrivateRedis  # noqa: E402
from gateway.responders import AckResponder  # noqa: E402
from gateway.router import Router  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from gateway.streams import Streams  # noqa: E402
from members.records import Member, MemberStore  # noqa: E402
from tests.e2e.product import free_port  # noqa: E402

SINK = r"""
import asyncio, sys, time
from aiosmtpd.controller import Controller
expected, port = int(sys.argv[1]), int(sys.argv[2])
state = {"n": 0, "first": 0.0}
done = asyncio.Event()
class H:
    async def handle_DATA(self, server, session, envelope):
        if state["n"] == 0:
            state["first"] = time.perf_counter()
        state["n"] += 1
        if state["n"] >= expected:
            loop.call_soon_threadsafe(done.set)
        return "250 OK"
async def main():
    global loop
    loop = asyncio.get_running_loop()
    c = Controller(H(), hostname="127.0.0.1", port=port)
    c.start()
    print("ready", flush=True)
    await done.wait()
    print(f"{expected / (time.perf_counter() - state['first']):.1f}", flush=True)
    c.stop()
asyncio.run(main())
"""


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def a_weekday_10am() -> dt.datetime:
    day = dt.datetime.now(PARIS).date() + dt.timedelta(days=1)
    while day.isoweekday() >= 6:
        day += dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(10), PARIS)


async def load_members(redis: Redis, n: int, *, email_only: bool = False) -> list[str]:
    store = MemberStore(redis)
    numbers = []
    for start in range(0, n, 5000):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(start, min(n, start + 5000)):
                number = f"M{i:07d}"
                numbers.append(number)
                phone = "" if email_only or i % 3 == 0 else f"+3319900{i % 10000:04d}"
                store.write(
                    pipe,
                    Member(
                        number,
                        "Camille",
                        f"Durand{i}",
                        "1975-03-12",
                        phone,
                        f"m{i}@example.fr",
                        "confort",
                        "Bretagne",
                        "famille",
                        "64.20",
                        "2027-03-10",
                    ),
                )
            await pipe.execute()
    return numbers


async def plan_and_enqueue(url: str, size: int) -> dict[str, float]:
    redis = connect(url)
    await redis.flushall(asynchronous=True)
    t0 = time.perf_counter()
    await load_members(redis, size)
    load_s = time.perf_counter() - t0
    streams = Streams(redis, shards=4, maxlen=size * 2, dedup_ttl_s=3600)
    router = Router(redis, streams, AckResponder(), Contacts(redis), Conversations(redis))
    engine = Campaigns(redis, enqueue=router.enqueue_many, rates={"email": 100_000.0, "sms": 100_000.0})
    effective = (a_weekday_10am().date() + dt.timedelta(days=70)).replace(day=1).isoformat()
    campaign = from_input({"kind": "contribution_change", "title": "Évolution de votre cotisation",
                           "effective_date": effective, "channels": ["email", "sms"],
                           "values": {"new_contribution": "67.10", "change_percent": "4.5"}})  # fmt: skip
    await engine.save(campaign)
    now = a_weekday_10am()
    t0 = time.perf_counter()
    await engine.schedule(campaign, now, now=now)
    plan_s = time.perf_counter() - t0
    campaign = await engine.get(campaign.id)
    assert campaign is not None
    # Rendering alone (the templates, French formatting), on the first 100,000 members' records.
    renderer, render_s, rendered = Renderer(campaign.templates, campaign.values), 0.0, 0
    numbers = [f"M{i:07d}" for i in range(min(size, 100_000))]
    for start in range(0, len(numbers), 5000):
        batch = await engine.store.read_many(numbers[start : start + 5000])
        t0 = time.perf_counter()
        for member in batch:
            renderer.render("email", member, context(campaign, member), engine.variables(campaign, member, {}))
        render_s += time.perf_counter() - t0
        rendered += len(batch)
    t0 = time.perf_counter()
    sent = 0
    while True:
        n = await engine._send_due(campaign, now.timestamp(), limit=2000)
        if n == 0 and not await redis.zcard(key(campaign.id, "due")):
            break
        sent += n
    send_s = time.perf_counter() - t0
    queued = sum([await redis.xlen(keys.stream("bulk", s)) for s in range(4)])
    info = await redis.info("memory")
    await redis.flushall(asynchronous=True)
    await redis.aclose()
    return {"size": size, "load_s": load_s, "plan_per_s": size / plan_s, "send_per_s": sent / send_s,
            "render_per_s": rendered / render_s,
            "queued": queued, "redis_mb": info["used_memory"] / 2**20, "rss_mb": peak_rss_mb()}  # fmt: skip


async def settle(url: str) -> None:
    """Wait until Redis is done with the previous run (freeing a flushed million, rewriting its AOF),
    so the dispatcher is not measured against a busy Redis while the bare loop needs none."""
    redis = connect(url)
    await redis.flushall(asynchronous=False)
    with contextlib.suppress(ResponseError):  # "already in progress"
        await redis.bgrewriteaof()
    for _ in range(600):
        persistence, memory = await redis.info("persistence"), await redis.info("memory")
        if not int(persistence.get("aof_rewrite_in_progress", 0)) and not int(
            memory.get("lazyfree_pending_objects", 0)
        ):
            break
        await asyncio.sleep(0.5)
    await redis.aclose()


async def mail_dispatch(url: str, mails: int) -> tuple[float, float]:
    """Messages/s: the gateway's dispatcher and e-mail channel, then a bare aiosmtplib loop."""
    await settle(url)
    results = []
    for mode in ("gateway", "bare"):
        port = free_port()
        sink = subprocess.Popen([sys.executable, "-c", SINK, str(mails), str(port)], stdout=subprocess.PIPE, text=True)
        assert sink.stdout is not None
        assert sink.stdout.readline().strip() == "ready"
        redis = connect(url)
        await redis.flushall(asynchronous=True)
        settings = Settings.from_env({
            "REDIS_URL": url, "SMTP_URL": f"smtp://127.0.0.1:{port}", "EMAIL_RATE_PER_S": "1000000",
            "VAR_DIR": tempfile.mkdtemp(prefix="bench-camp-"), "PATH": os.environ.get("PATH", ""),
        })  # fmt: skip
        gw = Gateway(settings, redis, roles=frozenset({"worker"}), channel_names=["email"])
        msgs = [
            Message(id=f"c.bench.M{i:07d}.0", channel="email", urn=f"mailto:m{i}@example.fr", direction="out",
                    text=f"Bonjour Camille,\n\nVotre cotisation évolue au 1er mars 2027 ({i}).",
                    meta={"campaign": "bench", "thread": {"subject": "Évolution de votre cotisation"},
                          "html": "<p>Bonjour Camille,</p><p>Votre cotisation évolue.</p>"},
                    conversation_id=f"c.bench.M{i:07d}")
            for i in range(mails)
        ]  # fmt: skip
        if mode == "gateway":
            await gw.start_channels()
            for start in range(0, mails, 1000):
                await gw.router.enqueue_many(msgs[start : start + 1000])
            await gw.start_workers()
        else:
            channel = gw.channels["email"]
            sem = asyncio.Semaphore(32)  # the dispatcher's concurrency per shard

            async def one(
                msg: Message, sem: asyncio.Semaphore = sem, port: int = port, channel: object = channel
            ) -> None:
                async with sem:  # the same MIME message the channel builds, sent with no bookkeeping
                    await aiosmtplib.send(channel.build(msg), hostname="127.0.0.1", port=port)  # type: ignore[attr-defined]

            await asyncio.gather(*(one(m) for m in msgs))
        rate = float(await asyncio.to_thread(sink.stdout.readline))
        sink.wait(timeout=10)
        if mode == "gateway":
            await gw.stop_workers()
            await gw.stop_channels()
        await redis.flushall(asynchronous=True)
        await redis.aclose()
        results.append(rate)
    return results[0], results[1]


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--mails", type=int, default=3000)
    args = ap.parse_args()
    server = PrivateRedis(Path(tempfile.mkdtemp(prefix="bench-campaign-redis-")))
    url = server.start()
    print("campaign benchmark (127.0.0.1, private redis-server with AOF everysec)", flush=True)
    try:
        for size in args.sizes.split(","):
            r = await plan_and_enqueue(url, int(size))
            print(
                f"  {int(r['size']):>9,} members: loaded in {r['load_s']:.1f} s; planned {r['plan_per_s']:,.0f}/s; "
                f"rendered {r['render_per_s']:,.0f}/s (templates alone); "
                f"claimed, rendered and queued {r['send_per_s']:,.0f}/s ({int(r['queued']):,} notices); "
                f"peak RSS {r['rss_mb']:.0f} MB, Redis {r['redis_mb']:.0f} MB",
                flush=True,
            )
        gateway_rate, bare_rate = await mail_dispatch(url, args.mails)
    finally:
        server.stop()
    print(
        f"  e-mail dispatch of {args.mails:,} notices to loopback SMTP: gateway {gateway_rate:,.0f}/s, "
        f"bare aiosmtplib loop {bare_rate:,.0f}/s -> {gateway_rate / bare_rate:.0%} (target >= 80 %)"
    )
    print("  targets: >= 20,000 recipients/s planned and rendered; e-mail dispatch >= 80 % of the bare loop")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
