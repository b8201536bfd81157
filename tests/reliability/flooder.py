"""A flooding SMS sender in a process of its own, so that its posts do not delay the test's event loop,
which times other members' replies at the fake Twilio.

``python -m tests.reliability.flooder`` reads one JSON object on standard input: ``url``, ``per_s``,
``window_s``, ``t0`` (a ``time.monotonic()`` reading, the same clock in every process) and ``requests``
(signed webhooks as ``[headers, body]``). It posts one every ``1/per_s`` seconds during the odd
windows after ``t0`` until SIGTERM or until it runs out, then prints ``{"sent": n, "5xx": k}``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time

import aiohttp


def flooding(t0: float, window_s: float) -> bool:
    """Whether the flood is on now: every other window of ``window_s`` after ``t0``."""
    return int((time.monotonic() - t0) / window_s) % 2 == 1


async def main() -> None:
    spec = json.loads(sys.stdin.read())
    requests: list[tuple[dict[str, str], str]] = [(h, b) for h, b in spec["requests"]]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)

    async with aiohttp.ClientSession() as http:

        async def post(headers: dict[str, str], body: str) -> int:
            async with http.post(spec["url"], data=body.encode(), headers=headers) as resp:
                await resp.read()
                return resp.status

        posts: list[asyncio.Task[int]] = []
        while not stop.is_set() and requests:
            if flooding(spec["t0"], spec["window_s"]):
                posts.append(asyncio.create_task(post(*requests.pop())))
            await asyncio.sleep(1 / spec["per_s"])
        statuses = await asyncio.gather(*posts)
    print(json.dumps({"sent": len(statuses), "5xx": sum(1 for s in statuses if s >= 500)}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
