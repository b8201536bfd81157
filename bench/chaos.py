#!/usr/bin/env python3
"""The reliability scenarios of ``tests/reliability`` at full size, and a soak; one table of figures.

Each scenario runs against a fresh ``run.py serve`` with loopback Twilio, Telegram and SMTP servers
(127.0.0.1 only) and prints what was sent, what came out, what was lost or duplicated, the faults
injected and the 5xx answers. The soak runs mixed traffic for ``--soak-minutes`` and prints the
memory of each process after its warm-up and at the end.

    .venv/bin/python bench/chaos.py                       # everything, 30-minute soak (~45 min)
    .venv/bin/python bench/chaos.py --soak-minutes 2      # a quicker look
    .venv/bin/python bench/chaos.py --only redelivery,redis_crash
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.reliability.conftest import table  # noqa: E402
from tests.reliability.rig import Rig, open_rig  # noqa: E402
from tests.reliability.scenarios import (  # noqa: E402
    Figures,
    callbacks_shuffled,
    email_faults,
    flood_isolation,
    kill_anywhere,
    poison,
    redelivery,
    redis_crash,
    size_limits,
    sms_faults,
    soak,
    telegram_faults,
)

FAST = {"EMAIL_RATE_PER_S": "1000", "SMS_RATE_PER_S": "1000", "CAMPAIGN_RECLAIM_S": "5"}
IMPATIENT = {"SEND_TIMEOUT_S": "2", "SEND_BACKOFF_BASE_S": "0.2", "SEND_BACKOFF_MAX_S": "1"}


def scenarios(soak_minutes: float) -> dict[str, tuple[dict[str, str], Callable[[Rig], Awaitable[Figures]]]]:
    return {
        "redelivery": ({}, lambda r: redelivery(r, copies=(3, 10), spread_s=120.0)),
        "kill_anywhere": (
            FAST,
            lambda r: kill_anywhere(r, kills=20, inbound=1000, recipients=10_000, targets=("serve", "web", "worker")),
        ),
        "kill_with_redis": (FAST, lambda r: kill_anywhere(r, kills=20, inbound=1000, recipients=10_000)),
        "redis_crash": ({}, lambda r: redis_crash(r, messages=1000, per_s=50.0)),
        "poison": ({}, lambda r: poison(r)),
        "sms_faults": (IMPATIENT, lambda r: sms_faults(r, members=50)),
        "telegram_faults": (IMPATIENT, lambda r: telegram_faults(r, chats=50)),
        "email_faults": (IMPATIENT, lambda r: email_faults(r, senders=50)),
        "callbacks": ({}, lambda r: callbacks_shuffled(r, n=200, copies=3)),
        "flood": ({}, lambda r: flood_isolation(r, members=100, per_member=60)),
        "size_limits": ({}, lambda r: size_limits(r, body_limit=256 * 1024, email_limit=10 * 1024 * 1024)),
        "soak": ({}, lambda r: soak(r, seconds=soak_minutes * 60, per_s=10.0, warmup_s=60.0)),
    }


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--soak-minutes", type=float, default=30.0)
    ap.add_argument("--only", default="", help="comma-separated scenario names")
    args = ap.parse_args()
    chosen = scenarios(args.soak_minutes)
    names = [n for n in args.only.split(",") if n] or list(chosen)
    rows = []
    started = time.monotonic()
    for name in names:
        env, run = chosen[name]
        print(f"… {name}", flush=True)
        with tempfile.TemporaryDirectory(prefix=f"chaos-{name}-") as tmp:
            async with open_rig(Path(tmp), **env) as rig:
                fig = await run(rig)
        rows.append(fig.row())
        print(table([fig.row()]), flush=True)
    print(f"\nchaos run: {len(rows)} scenarios in {time.monotonic() - started:.0f} s (127.0.0.1 only)")
    print(table(rows))
    failed = [r["scenario"] for r in rows if r["lost"] or r["duplicated"]]
    print("lost or duplicated in: " + ", ".join(failed) if failed else "nothing lost, nothing duplicated")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
