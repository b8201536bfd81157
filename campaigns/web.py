"""The campaign console and its JSON API, for communications staff (and supervisors).

Signed in through the staff site (``staff/web.py``): the same sessions, CSRF and Origin rules as the
agents' console. Errors are JSON with one French
message per field (``{"error": "invalid", "fields": {...}}``).
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from campaigns.engine import Campaigns
from campaigns.model import KINDS, CampaignError, decode_list, from_input, key
from campaigns.proof import csv_chunks, xlsx_file
from campaigns.rules import PARIS
from gateway import unsubscribe
from members import cover
from members.audit import unsubscribed_audit
from members.records import SEGMENTS
from staff.web import USER_KEY, Refused, StaffSite, read_json, static_file

if TYPE_CHECKING:
    from jinja2 import Environment
    from redis.asyncio import Redis

    from gateway.settings import Settings

log = logging.getLogger(__name__)
ROLES = ("communications", "supervisor")
STATIC = Path(__file__).resolve().parent / "static"
MAX_LIST_BYTES = 20 * 2**20  # about two million member numbers
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def invalid(exc: CampaignError) -> web.Response:
    return web.json_response({"error": "invalid", "fields": exc.errors}, status=400)


def routes(site: StaffSite, campaigns: Campaigns) -> web.RouteTableDef:
    r = web.RouteTableDef()
    guard = site.guarded(ROLES)
    r.get("/console/static/campaigns.js")(static_file(STATIC / "campaigns.js", "application/javascript"))

    async def load(request: web.Request) -> Any:
        campaign = await campaigns.get(request.match_info["cid"])
        if campaign is None:
            raise Refused("Campagne inconnue.", 404)
        return campaign

    @r.get("/console/campaigns")
    async def page(request: web.Request) -> web.Response:
        user, csrf = await site.page_for(request, ROLES)
        return site.page(
            "console/campaigns.html.j2",
            user=user,
            csrf=csrf,
            kinds=KINDS,
            cover_levels=cover.levels(),
            segments=SEGMENTS,
        )

    @r.get("/console/api/campaigns")
    @guard
    async def listing(request: web.Request) -> web.Response:
        out = []
        for c in await campaigns.all():
            info = await campaigns.redis.hgetall(key(c.id))
            out.append({**c.public(), "planned": int(info.get("planned") or 0), "start_at": info.get("start_at", "")})
        return web.json_response(out)

    @r.post("/console/api/campaigns")
    @guard
    async def create(request: web.Request) -> web.Response:
        try:
            campaign = from_input(await read_json(request), created_by=request[USER_KEY].login)
        except CampaignError as exc:
            return invalid(exc)
        await campaigns.save(campaign)
        log.info("campaign created", extra={"campaign": campaign.id, "user": request[USER_KEY].login})
        return web.json_response(campaign.public(), status=201)

    @r.post("/console/api/campaigns/{cid}/audience")
    @guard
    async def upload(request: web.Request) -> web.Response:
        """The audience as a file of member numbers (text or CSV), sent as the request body."""
        campaign = await load(request)
        body = bytearray()
        async for chunk in request.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > MAX_LIST_BYTES:
                return invalid(
                    CampaignError({"file": f"fichier trop volumineux (au plus {MAX_LIST_BYTES // 2**20} Mo)"})
                )
        try:
            result = await campaigns.import_list(campaign, decode_list(bytes(body)))
        except CampaignError as exc:
            return invalid(exc)
        log.info("campaign list imported", extra={"campaign": campaign.id, "members": result["members"]})
        return web.json_response(result)

    @r.get("/console/api/campaigns/{cid}")
    @guard
    async def show(request: web.Request) -> web.Response:
        return web.json_response(await campaigns.report(await load(request)))

    @r.put("/console/api/campaigns/{cid}")
    @guard
    async def edit(request: web.Request) -> web.Response:
        """A draft changed: the whole campaign again, as for its creation; its list and values stay."""
        campaign = await load(request)
        try:
            edited = await campaigns.update(campaign, await read_json(request))
        except CampaignError as exc:
            return invalid(exc)
        log.info("campaign edited", extra={"campaign": campaign.id, "user": request[USER_KEY].login})
        return web.json_response(edited.public())

    @r.post("/console/api/campaigns/{cid}/count")
    @guard
    async def count(request: web.Request) -> web.Response:
        try:
            return web.json_response(await campaigns.count(await load(request)))
        except CampaignError as exc:
            return invalid(exc)

    @r.post("/console/api/campaigns/{cid}/preview")
    @guard
    async def preview(request: web.Request) -> web.Response:
        """The notices of three members of the audience, each with their own figures."""
        shown = await campaigns.preview(await load(request), 3)
        if not shown:
            raise Refused("Aucun adhérent dans cette audience.", 400)
        return web.json_response({"member": shown[0]["member"], "channels": shown[0]["channels"], "members": shown})

    @r.post("/console/api/campaigns/{cid}/schedule")
    @guard
    async def schedule(request: web.Request) -> web.Response:
        campaign = await load(request)
        data = await read_json(request)
        try:
            start = dt.datetime.fromisoformat(str(data.get("start_at") or dt.datetime.now(PARIS).isoformat()))
        except ValueError:
            return invalid(CampaignError({"start_at": "date et heure illisibles (AAAA-MM-JJTHH:MM)"}))
        if start.tzinfo is None:
            start = start.replace(tzinfo=PARIS)
        try:
            plan = await campaigns.schedule(campaign, start)
        except CampaignError as exc:
            return invalid(exc)
        log.info("campaign scheduled", extra={"campaign": campaign.id, "planned": plan["planned"]})
        return web.json_response({**plan, "window_warning": campaign.window_warning()})

    @r.post("/console/api/campaigns/{cid}/{action:pause|resume|cancel}")
    @guard
    async def control(request: web.Request) -> web.Response:
        campaign = await load(request)
        try:
            await getattr(campaigns, request.match_info["action"])(campaign)
        except CampaignError as exc:
            return invalid(exc)
        return web.json_response({"ok": True, "state": campaign.state})

    @r.get("/console/api/campaigns/{cid}/proof.csv")
    @guard
    async def proof(request: web.Request) -> web.StreamResponse:
        """Proof of notice, member by member, as French Excel opens it (see ``campaigns/proof.py``)."""
        campaign = await load(request)
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": f'attachment; filename="preuve-{campaign.id}.csv"',
                "Cache-Control": "no-store",
            }
        )
        await resp.prepare(request)
        async for chunk in csv_chunks(campaigns.recipients(campaign)):
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    @r.get("/console/api/campaigns/{cid}/proof.xlsx")
    @guard
    async def proof_xlsx(request: web.Request) -> web.StreamResponse:
        """The same proof as an Excel workbook."""
        campaign = await load(request)
        book = await xlsx_file(campaigns.recipients(campaign))
        try:
            resp = web.StreamResponse(
                headers={
                    "Content-Type": XLSX,
                    "Content-Disposition": f'attachment; filename="preuve-{campaign.id}.xlsx"',
                    "Cache-Control": "no-store",
                }
            )
            await resp.prepare(request)
            while chunk := book.read(64 * 1024):
                await resp.write(chunk)
            await resp.write_eof()
        finally:
            book.close()
        return resp

    @r.get("/console/api/campaigns/{cid}/postal")
    @guard
    async def postal(request: web.Request) -> web.Response:
        return web.json_response(await campaigns.postal(await load(request)))

    return r


def public_routes(settings: Settings, redis: Redis, templates: Environment) -> web.RouteTableDef:
    """The unsubscribe links of information e-mails: a confirmation page (a GET changes nothing, so
    link scanners do no harm), and the POST that mail clients send for one-click (RFC 8058)."""
    r = web.RouteTableDef()

    def page(state: str, token: str = "", status: int = 200) -> web.Response:
        html = templates.get_template("unsubscribe/page.html.j2").render(state=state, token=token)
        return web.Response(text=html, content_type="text/html", status=status)

    @r.get("/desabonnement/{token}")
    async def confirm(request: web.Request) -> web.Response:
        token = request.match_info["token"]
        if unsubscribe.member_of(settings.secret_key, token) is None:
            return page("invalid", status=404)
        return page("confirm", token)

    @r.post("/desabonnement/{token}")
    async def one_click(request: web.Request) -> web.Response:
        number = unsubscribe.member_of(settings.secret_key, request.match_info["token"])
        if number is None:
            return page("invalid", status=404)
        await unsubscribe.unsubscribe(redis, number, "web", unsubscribed_audit(redis))
        log.info("information e-mails declined", extra={"via": "link"})
        return page("done")

    return r
