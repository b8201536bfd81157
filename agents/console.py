"""The agents' console: the live console page, its JSON API and its WebSocket, and the
supervisor's page.

Sign-in, sessions, CSRF and Origin checks are the staff site's (``staff/web.py``), shared with the
campaign console. An agent reaches only their queue and conversations. Live updates: one Redis
pub/sub listener per process fans ``keys.CONSOLE_NOTIFY`` out to the open sockets, which tell the
page what changed; the page then asks the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from redis.asyncio import Redis

from agents.calls import CallDesk, PhoneCalls, call_figures
from agents.desk import CALLBACK_LEAD_S, PARIS, PICKUP_TARGET_S, Desk, DeskError
from gateway import keys
from gateway.settings import ROOT, Settings
from gateway.webhooks import dead_letters as webhook_dead_letters
from staff.users import SKILL_LABELS, SKILLS
from staff.web import USER_KEY, StaffSite, read_json, static_file

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
CANNED = ROOT / "templates" / "canned"


def canned_answers() -> list[dict[str, str]]:
    """Canned answers are plain text files in templates/canned/ (the first line is the title)."""
    out = []
    for path in sorted(CANNED.glob("*.txt")):
        title, _, body = path.read_text(encoding="utf-8").partition("\n")
        out.append({"id": path.stem, "title": title.strip(), "text": body.strip()})
    return out


class Console:
    def __init__(self, settings: Settings, redis: Redis, desk: Desk, site: StaffSite) -> None:
        self.settings = settings
        self.redis = redis
        self.desk = desk
        self.site = site
        self.users = site.users
        site.seen.append(desk.seen)  # a signed-in agent using any staff page is present
        self._sockets: set[asyncio.Queue[str]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._open: set[web.WebSocketResponse] = set()
        # Phone calls (agents/calls.py), when the voice channel is on: set by the composition root.
        self.calls: CallDesk | None = None
        self.phones: PhoneCalls | None = None

    # Lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen(), name="console-notify"),
            asyncio.create_task(self._callbacks_coming_due(), name="console-callbacks"),
        ]

    async def shutdown(self) -> None:
        """Close the consoles' sockets so the server does not wait for them (pages reconnect)."""
        for ws in list(self._open):
            with contextlib.suppress(Exception):  # a client that never answers the close is not waited for
                await asyncio.wait_for(ws.close(code=WSCloseCode.GOING_AWAY, message=b"restart"), timeout=1)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _callbacks_coming_due(self, every_s: float = 2.0) -> None:
        """A callback enters the queue when its slot comes: tell this process's open consoles."""
        known: set[str] = set()
        while True:
            await asyncio.sleep(every_s)
            try:
                due = set(await self.redis.zrangebyscore(keys.CALLBACKS_DUE, "-inf", time.time() + CALLBACK_LEAD_S))
                for cb_id in due - known:
                    for queue in list(self._sockets):
                        queue.put_nowait(str(cb_id))
                known = due
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("callback watch failed")

    async def _listen(self) -> None:
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(keys.CONSOLE_NOTIFY)
                async for item in pubsub.listen():
                    if item.get("type") == "message":
                        for queue in list(self._sockets):
                            queue.put_nowait(str(item.get("data")))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("console notifications interrupted, resubscribing")
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), timeout=2)

    # Routes ---------------------------------------------------------------------------------
    def routes(self) -> web.RouteTableDef:
        routes = web.RouteTableDef()
        desk = self.desk

        api = self.site.guarded
        body = read_json

        @routes.get("/console")
        async def console_page(request: web.Request) -> web.StreamResponse:
            found = await self.site.user(request)
            if found is None:
                raise web.HTTPSeeOther("/console/login")
            user, csrf = found
            if user.role == "communications":
                raise web.HTTPSeeOther("/console/campaigns")
            return self.site.page("console/console.html.j2", user=user, csrf=csrf, skills=SKILL_LABELS)

        @routes.get("/console/supervisor")
        async def supervisor_page(request: web.Request) -> web.StreamResponse:
            user, csrf = await self.site.page_for(request, ("supervisor",))
            return self.site.page("console/supervisor.html.j2", user=user, csrf=csrf)

        routes.get("/console/static/console.js")(static_file(STATIC / "console.js", "application/javascript"))

        @routes.get("/console/api/state")
        @api()
        async def state(request: web.Request) -> web.Response:
            user = request[USER_KEY]
            queue = await desk.queue(user)
            return web.json_response(
                {
                    "me": user.public(),
                    "queue": [i.public() for i in queue],
                    "mine": await desk.mine(user),
                    "callbacks_mine": await desk.callbacks.mine(user),
                    "agents_online": await desk.online(),
                    "pickup_target_s": PICKUP_TARGET_S,
                    "calls_enabled": self.calls is not None,
                    "skills": {k: SKILL_LABELS[k] for k in SKILLS},
                    "agents": [u.public() for u in await self.users.all() if u.role != "communications"],
                }
            )

        @routes.get("/console/api/canned")
        @api()
        async def canned(request: web.Request) -> web.Response:
            return web.json_response(canned_answers())

        @routes.get("/console/api/conversations/{conv}")
        @api()
        async def conversation(request: web.Request) -> web.Response:
            return web.json_response(await desk.conversation(request[USER_KEY], request.match_info["conv"]))

        @routes.post("/console/api/take-next")
        @api()
        async def take_next(request: web.Request) -> web.Response:
            return web.json_response(await desk.take_next(request[USER_KEY]))

        @routes.post("/console/api/conversations/{conv}/{action}")
        @api()
        async def act(request: web.Request) -> web.Response:
            user, conv_id, action = request[USER_KEY], request.match_info["conv"], request.match_info["action"]
            if action == "take":
                return web.json_response(await desk.take(user, conv_id))
            data = await body(request)
            if action == "unlink":  # « Ne plus reconnaître ce compte » in the member's record
                return web.json_response(await desk.unlink_account(user, conv_id, str(data.get("contact") or "")))
            if action == "assign":
                return web.json_response(await desk.assign(user, conv_id, str(data.get("to_agent") or "")))
            if action == "reply":
                client_id = str(data.get("client_id") or "")
                if not 8 <= len(client_id) <= 64 or not client_id.replace("-", "").isalnum():
                    raise DeskError("Identifiant de message invalide.", 400)
                msg_id = await desk.reply(user, conv_id, str(data.get("text") or ""), client_id)
                return web.json_response({"ok": True, "msg_id": msg_id})
            if action == "note":
                await desk.note(user, conv_id, str(data.get("text") or ""))
            elif action == "transfer":
                await desk.transfer(
                    user, conv_id, to_agent=str(data.get("to_agent") or ""), to_skill=str(data.get("to_skill") or "")
                )
            elif action == "close":
                await desk.close(user, conv_id)
            elif action == "bot":
                await desk.give_back(user, conv_id)
            else:
                raise DeskError("Action inconnue.", 404)
            return web.json_response({"ok": True})

        @routes.post("/console/api/calls/{conv}/take")
        @api()
        async def take_call(request: web.Request) -> web.Response:
            """« Prendre l'appel »: the waiting call is the agent's, and their phone rings to bridge it."""
            if self.calls is None:
                raise DeskError("Les appels téléphoniques ne sont pas configurés.", 409)
            return web.json_response(await self.calls.take_call(request[USER_KEY], request.match_info["conv"],
                                                                self.phones))  # fmt: skip

        @routes.post("/console/api/callbacks/{cb}/call")
        @api()
        async def callback_call(request: web.Request) -> web.Response:
            """« Appeler »: the agent's phone rings, then the member's, from the mutuelle's number."""
            if self.calls is None:
                raise DeskError("Les appels téléphoniques ne sont pas configurés.", 409)
            return web.json_response(await self.calls.call_back(request[USER_KEY], request.match_info["cb"],
                                                               self.phones))  # fmt: skip

        @routes.get("/console/api/callbacks")
        @api()
        async def callbacks_ahead(request: web.Request) -> web.Response:
            """The « Rappels » view: today's and the coming days' callbacks, per slot."""
            try:
                days = max(1, min(31, int(request.query.get("days", "7"))))
            except ValueError:
                days = 7
            return web.json_response(await desk.callbacks.ahead(request[USER_KEY], days))

        @routes.get("/console/api/callbacks/{cb}")
        @api()
        async def callback_detail(request: web.Request) -> web.Response:
            return web.json_response(await desk.callbacks.detail(request[USER_KEY], request.match_info["cb"]))

        @routes.post("/console/api/callbacks/{cb}/take")
        @api()
        async def callback_take(request: web.Request) -> web.Response:
            return web.json_response(await desk.callbacks.take(request[USER_KEY], request.match_info["cb"]))

        @routes.post("/console/api/callbacks/{cb}/outcome")
        @api()
        async def callback_outcome(request: web.Request) -> web.Response:
            data = await body(request)
            result = await desk.callback_outcome(request[USER_KEY], request.match_info["cb"], str(data.get("outcome")))
            return web.json_response({"ok": True, "status": result.get("status")})

        @routes.get("/console/api/complaints")
        @api()
        async def complaints(request: web.Request) -> web.Response:
            return web.json_response(await desk.complaints(request[USER_KEY]))

        @routes.post("/console/api/complaints/{member}/{ref}")
        @api()
        async def complaint_done(request: web.Request) -> web.Response:
            data = await body(request)
            record = await desk.complaint_done(
                request[USER_KEY], request.match_info["member"], request.match_info["ref"], str(data.get("status"))
            )
            return web.json_response(record)

        @routes.get("/console/api/stats")
        @api(("supervisor",))
        async def stats(request: web.Request) -> web.Response:
            try:
                days = max(1, min(90, int(request.query.get("days", "14"))))
            except ValueError:
                days = 14
            return web.json_response(await self.daily(days))

        @routes.get("/console/api/dead-letters")
        @api(("supervisor",))
        async def dead_letters(request: web.Request) -> web.Response:
            """Messages whose handling kept failing, set aside so they block nothing, with the error; and the
            events the back office's webhooks kept refusing (``webhooks``)."""
            found = await self.desk.router.streams.dead_letters()
            return web.json_response({**found, "webhooks": await webhook_dead_letters(self.redis)})

        @routes.get("/console/ws")
        async def socket(request: web.Request) -> web.StreamResponse:
            if not self.site.socket_origin_ok(request):
                return web.json_response({"error": "origin_refused"}, status=403)
            found = await self.site.user(request)
            if found is None:
                return web.json_response({"error": "login_required"}, status=401)
            user = found[0]
            ws = web.WebSocketResponse(heartbeat=30, max_msg_size=4096)
            await ws.prepare(request)
            self._open.add(ws)
            queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1000)
            self._sockets.add(queue)
            await desk.seen(user)

            async def push() -> None:
                while not ws.closed:
                    ref = await queue.get()
                    await ws.send_json({"type": "changed", "ref": ref})

            pusher = asyncio.create_task(push())
            try:
                async for frame in ws:
                    if frame.type == WSMsgType.TEXT:  # the page's keep-alive: the agent is present
                        await desk.seen(user)
            finally:
                self._open.discard(ws)
                self._sockets.discard(queue)
                pusher.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionResetError):
                    await pusher
            return ws

        return routes

    async def daily(self, days: int) -> dict[str, Any]:
        """Per day: service level, answer rate, complaints in time, satisfaction, NPS, containment, and the status
        questions the bot answered (``status_questions``; ``status_after_notice``: after a message sent first
        about the same record, within 7 days; ``status_changed_untold``: on a record changed without one;
        ``detail_answers``: « DETAIL » answered: bot/actions/detail.py)."""
        today = dt.datetime.now(PARIS).date()
        out = []
        for back in range(days - 1, -1, -1):
            day = (today - dt.timedelta(days=back)).isoformat()
            raw = await self.redis.hgetall(keys.day_stats(day))
            c = {k: int(v) for k, v in raw.items() if v.lstrip("-").isdigit()}
            promoters, detractors = c.get("nps_promoters", 0), c.get("nps_detractors", 0)
            nps_n = promoters + detractors + c.get("nps_passives", 0)
            out.append(
                {
                    "day": day,
                    **c,
                    "agents": int(await self.redis.scard(keys.day_agents(day))),
                    "service_level": _ratio(c.get("picked_in_target", 0), c.get("picked", 0)),
                    "answer_rate": _ratio(c.get("picked", 0), c.get("handoffs", 0)),
                    "complaints_in_time_rate": _ratio(c.get("complaints_in_time", 0), c.get("complaints_answered", 0)),
                    "csat": round(c["csat_sum"] / c["csat_n"], 2) if c.get("csat_n") else None,
                    "nps": round(100 * (promoters - detractors) / nps_n) if nps_n else None,
                    "containment": _ratio(c.get("conversations", 0) - c.get("handoffs", 0), c.get("conversations", 0)),
                    "calls": {"all": call_figures(c), **{s: call_figures(c, s) for s in SKILLS}},
                }
            )
        queue = await self.desk.queue(None)
        return {
            "days": out,
            "calls_enabled": self.calls is not None,
            # The contact centre's targets for calls: 90 % answered, 81 % answered within 60 seconds.
            "call_targets": {"answer_rate": 0.9, "answered_60_rate": 0.81},
            "skills": {k: SKILL_LABELS[k] for k in SKILLS},
            "now": {
                "waiting": len(queue),
                "waiting_by_skill": {s: sum(1 for i in queue if i.skill == s) for s in SKILLS},
                "agents_online": len(await self.desk.online()),
                "oldest_wait_ms": min((i.since_ms for i in queue), default=None),
            },
        }


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 3) if whole > 0 else None
