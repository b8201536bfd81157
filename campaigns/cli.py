"""``run.py campaign …``: the campaign commands for communications staff and operators.

run.py campaign create FILE.json [--list MEMBERS.csv]   validate and store a draft (prints its id);
                                        the audience may be a file of member numbers
run.py campaign list
run.py campaign count ID                audience size and the channel each member would get
run.py campaign preview ID              the notice per channel for three members (SMS encoding, segments)
run.py campaign schedule ID [--start 2027-01-05T09:00]   plan (progress bar) or say why not
run.py campaign pause|resume|cancel ID
run.py campaign report ID               where the notices stand
run.py campaign watch ID                a progress bar until the campaign is done
run.py campaign proof ID --out FILE.csv proof of notice, member by member, as French Excel opens it
                                        (FILE.xlsx: an Excel workbook; no --out: the CSV on standard output)

The --list file of ``create`` may carry each member's own figures: a header row, the member number,
a « nouvelle cotisation » column and any other column as a variable (see campaigns/variables.py).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import shutil
import sys
from pathlib import Path

from tqdm import tqdm

from campaigns.engine import Campaigns
from campaigns.model import CHANNEL_LABELS, CampaignError, decode_list, from_input
from campaigns.proof import BOM, csv_chunks, xlsx_file
from campaigns.rules import PARIS
from gateway.redis_client import connect
from gateway.redis_server import private_redis_url
from gateway.settings import Settings


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    with private_redis_url(settings) as url:
        return asyncio.run(_run(args, url, settings))


async def _run(args: argparse.Namespace, url: str, settings: Settings) -> int:
    redis = connect(url)
    enabled = (
        ("email",) + (("sms",) if settings.sms_enabled else ()) + (("whatsapp",) if settings.whatsapp_enabled else ())
    )
    engine = Campaigns(redis, rates=settings.campaign_rates(), enabled_channels=enabled)
    try:
        return await _act(args, engine)
    except CampaignError as exc:
        for field, message in exc.errors.items():
            print(f"{field} : {message}", file=sys.stderr)
        return 1
    finally:
        await redis.aclose()


async def _act(args: argparse.Namespace, engine: Campaigns) -> int:
    if args.action == "create":
        if not args.target:
            raise CampaignError({"fichier": "indiquez le fichier JSON de la campagne"})
        try:
            data = json.loads(Path(args.target).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CampaignError({"fichier": f"illisible ({exc})"}) from exc
        campaign = from_input(data, created_by="cli")
        text = ""
        if args.list:
            try:
                text = decode_list(Path(args.list).read_bytes())
            except OSError as exc:
                raise CampaignError({"liste": f"illisible ({exc})"}) from exc
        await engine.save(campaign)
        if args.list:
            try:
                got = await engine.import_list(campaign, text)
            except CampaignError:
                await engine.cancel(campaign)  # never a draft aimed at everyone by mistake
                raise
            print(f"liste importée : {got['members']} adhérents, dont {got['unknown']} inconnus ; "
                  f"{got['bad_count']} ligne(s) ignorée(s) {got['bad_lines'] or ''}"
                  + (f" ; valeurs par adhérent : {', '.join(got['variables'])}" if got["variables"] else ""),
                  file=sys.stderr)  # fmt: skip
        print(campaign.id)
        return 0
    if args.action == "list":
        for c in await engine.all():
            print(f"{c.id}  {c.state:<9}  {c.kind:<20}  {c.title}")
        return 0
    found = await engine.get(args.target or "")
    if found is None:
        raise CampaignError({"campagne": f"inconnue : {args.target}"})
    campaign = found
    if args.action == "count":
        counts = await engine.count(campaign)
        print(
            f"{counts['total']} adhérents : "
            + ", ".join(f"{CHANNEL_LABELS.get(k, k)} {v}" for k, v in sorted(counts["by_channel"].items()))
        )
    elif args.action == "preview":
        for shown in await engine.preview(campaign, 3):
            figures = shown["figures"]
            print(f"=== {shown['member']} {shown['name']}" + (
                f" : {figures['current_contribution']} → {figures['new_contribution']} "
                f"({figures.get('change_eur', '?')} €, {figures.get('change_percent', '?')} %)"
                if "new_contribution" in figures and "current_contribution" in figures else ""))  # fmt: skip
            if shown["error"]:
                print(shown["error"])
            for channel, notice in shown["channels"].items():
                print(f"--- {channel} ({shown['member']})")
                if channel == "sms":
                    print(f"[{notice['encoding']}, {notice['segments']} segment(s), {notice['units']} unités]")
                if channel == "email":
                    print(f"Objet : {notice['subject']}")
                print(notice["text"])
    elif args.action == "schedule":
        start = dt.datetime.fromisoformat(args.start) if args.start else dt.datetime.now(PARIS)
        if start.tzinfo is None:
            start = start.replace(tzinfo=PARIS)
        if campaign.window_warning():
            print(campaign.window_warning(), file=sys.stderr)
        with tqdm(desc="Planification", unit="adhérent") as bar:
            plan = await engine.schedule(campaign, start, progress=bar.update)
        print(
            f"Programmée : {plan['planned']} adhérents, départ {plan['start']}, fin estimée {plan['estimated_finish']}"
        )
    elif args.action in ("pause", "resume", "cancel"):
        await getattr(engine, args.action)(campaign)
        print(f"{campaign.id} : {campaign.state}")
    elif args.action == "report":
        print(json.dumps(await engine.report(campaign), ensure_ascii=False, indent=2))
    elif args.action == "watch":
        report = await engine.report(campaign)
        with tqdm(total=report["planned"], desc="Notices envoyées", unit="adhérent") as bar:
            while True:
                report = await engine.report(campaign)
                bar.n = report["notified"] + report["postal"]
                bar.refresh()
                fresh = await engine.get(campaign.id)
                if fresh is None or fresh.state in ("done", "cancelled"):
                    break
                await asyncio.sleep(2)
    elif args.action == "proof":
        if args.out and args.out.lower().endswith(".xlsx"):
            book = await xlsx_file(engine.recipients(campaign))
            with book, open(args.out, "wb") as out:
                shutil.copyfileobj(book, out)
        elif args.out:
            with open(args.out, "wb") as out:  # with the byte-order mark: French Excel opens it in columns
                async for chunk in csv_chunks(engine.recipients(campaign)):
                    out.write(chunk)
        else:
            async for chunk in csv_chunks(engine.recipients(campaign)):
                sys.stdout.write(chunk.decode("utf-8").removeprefix(BOM))
    return 0
