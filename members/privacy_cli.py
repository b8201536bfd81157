"""``run.py member export|erase NUMBER``: a member's right of access and right to erasure.

run.py member export 0001234567 [--out FILE.json]   everything held on the member, as JSON
run.py member erase 0001234567 --yes [--by LOGIN]   remove it everywhere; says what was kept as proof
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Callable
from pathlib import Path

from redis.asyncio import Redis

from gateway.redis_client import connect
from gateway.redis_server import private_redis_url
from gateway.settings import Settings
from members import numbers
from members.privacy import MemberData, Notices

# The campaigns' holder of notices (given by run.py, which sees every room).
NoticesFactory = Callable[[Redis], Notices]


def run(args: argparse.Namespace, notices: NoticesFactory | None = None) -> int:
    settings = Settings.from_env()
    with private_redis_url(settings) as url:
        return asyncio.run(_run(args, url, settings, notices))


async def _run(args: argparse.Namespace, url: str, settings: Settings, notices: NoticesFactory | None) -> int:
    redis = connect(url)
    data = MemberData(
        redis,
        stream_shards=settings.stream_shards,
        outbox=settings.var_dir / "outbox",
        notices=notices(redis) if notices is not None else None,
    )
    typed = str(args.number).strip()
    # However it is typed (« 0100002 », « m 010 0002 »): the number in the format setting's form.
    number = numbers.current().parse_number(typed) or typed
    try:
        if args.action == "export":
            found = await data.export(number)
            if not found["found"]:
                print(f"Aucune donnée pour l'adhérent {number}.", file=sys.stderr)
                return 1
            text = json.dumps(found, ensure_ascii=False, indent=2, sort_keys=True)
            if args.out:
                Path(args.out).write_text(text + "\n", encoding="utf-8")
                print(f"Données de l'adhérent {number} écrites dans {args.out}.")
            else:
                print(text)
            return 0
        if not args.yes:
            print("L'effacement est définitif : relancez avec --yes pour confirmer.", file=sys.stderr)
            return 2
        if not (await data.export(number))["found"]:
            print(f"Aucune donnée pour l'adhérent {number}.", file=sys.stderr)
            return 1
        report = await data.erase(number, by=args.by or getpass.getuser())
        print(f"Adhérent {number} effacé :")
        for what, n in sorted(report.removed.items()):
            print(f"  supprimé : {n} {what}")
        for item in dict.fromkeys(report.kept):
            print(f"  conservé : {item}")
        return 0
    finally:
        await redis.aclose()
