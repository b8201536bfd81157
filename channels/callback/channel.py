"""The callback channel: ``GET/POST /callback`` (an HTML form that works without JavaScript)
and ``POST /api/callbacks`` (JSON).

A request is stored for the agents' queue (``keys.callback`` hash, ``keys.CALLBACKS_DUE``
sorted by slot start) and accepted into the inbound stream like any message, so it joins
the member's contact and conversation. A double submit creates one request: the form
carries a one-time key and the API takes an ``Idempotency-Key`` header.

The member's confirmation is the answer itself (page or JSON) and, when SMS is enabled, an
SMS: the inbound message asks the router to reply on the ``sms`` channel. Without SMS the
reply is recorded on the ``callback`` channel as shown on the page.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from typing import Any, ClassVar

from aiohttp import web

from channels.base import ChannelBase
from channels.callback.validation import MAX_DAYS_AHEAD, REASONS, SLOTS, CallbackRequest, ValidationError, validate
from gateway import jsonbody, keys
from gateway.envelope import BadRequest, Message, SendResult, inbound, now_ms

log = logging.getLogger(__name__)

MAX_KEY = 100


# KEYS[1] = the request's hash. ARGV = field, value, ... Writes it whole if new; returns the stored
# fingerprint of an existing one (nil when just created), so a crash never leaves half a request.
_CREATE_ONCE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('HGET', KEYS[1], 'fingerprint') or '' end
redis.call('HSET', KEYS[1], unpack(ARGV))
return false
"""


class KeyReused(Exception):
    """An Idempotency-Key sent again with a different request."""


def request_id_for(key: str) -> str:
    return "cb" + hashlib.sha256(key.encode()).hexdigest()[:22]


class CallbackChannel(ChannelBase):
    name: ClassVar[str] = "callback"
    _create: Any = None  # the create-once script, registered on first use

    async def send(self, msg: Message) -> SendResult:
        # The confirmation was shown on the page or in the API answer when the request was made.
        return SendResult(status="delivered", meta={"via": "page"})

    def routes(self) -> web.RouteTableDef:
        routes = web.RouteTableDef()

        @routes.get("/callback")
        async def form(request: web.Request) -> web.Response:
            return self._page("callback/form.html.j2", values={}, errors={})

        @routes.post("/callback")
        async def submit(request: web.Request) -> web.Response:
            try:
                data = dict(await request.post())
            except ValueError:  # e.g. multipart without a boundary, undecodable form
                return self._page(
                    "callback/form.html.j2", values={}, errors={"form": "Formulaire illisible."}, status=400
                )
            fields = {k: v for k, v in data.items() if isinstance(v, str)}
            key = fields.get("request_key", "")
            if not key or len(key) > MAX_KEY:
                key = secrets.token_urlsafe(16)
            try:
                req = validate(fields)
            except ValidationError as exc:
                return self._page("callback/form.html.j2", values=fields, errors=exc.errors, status=400)
            try:
                request_id = await self.record(req, key)
            except KeyReused:  # the page went back and was sent again, changed: a new request
                request_id = await self.record(req, secrets.token_urlsafe(16))
            return self._page("callback/done.html.j2", values={"request_id": request_id, **_view(req)}, errors={})

        @routes.post("/api/callbacks")
        async def api(request: web.Request) -> web.Response:
            try:
                data = jsonbody.loads(await request.read())
            except BadRequest as exc:  # unreadable, too deep, invalid UTF-8...: the shared reader's reason
                return _error("body", f"Le corps de la requête doit être du JSON lisible ({exc}).")
            if not isinstance(data, dict):
                return _error("body", "Le corps de la requête doit être un objet JSON.")
            key = request.headers.get("Idempotency-Key", "")
            if len(key) > MAX_KEY:
                return _error("Idempotency-Key", f"La clé dépasse {MAX_KEY} caractères.")
            try:
                req = validate(data)
            except ValidationError as exc:
                return web.json_response(
                    {"error": {"fields": [{"field": f, "message": m} for f, m in exc.errors.items()]}}, status=400
                )
            replayed = bool(key) and await self.ctx.redis.exists(keys.callback(request_id_for(key)))
            try:
                request_id = await self.record(req, key or secrets.token_urlsafe(16))
            except KeyReused:
                return web.json_response(
                    {"error": {"code": "idempotency_key_reused",
                               "message": "Cette clé a déjà servi pour une autre demande de rappel."}},
                    status=422,
                )  # fmt: skip
            return web.json_response(
                {
                    "id": request_id,
                    "status": "pending",
                    "phone": req.phone,
                    "slot_start": req.slot_start.isoformat(),
                    "slot_end": req.slot_end.isoformat(),
                    "message": "Votre demande de rappel est enregistrée.",
                },
                status=201,
                headers={"Idempotent-Replayed": "true"} if replayed else {},
            )

        return routes

    async def record(self, req: CallbackRequest, key: str) -> str:
        """Store the request once per key and accept it into the inbound stream.

        Raises ``KeyReused`` when the key already names a different request (not a double submit)."""
        request_id = request_id_for(key)
        rkey = keys.callback(request_id)
        fingerprint = req.fingerprint()
        fields = {
            "id": request_id,
            "phone": req.phone,
            "slot_start": req.slot_start.isoformat(),
            "slot_end": req.slot_end.isoformat(),
            "reason": req.reason,
            "comment": req.comment,
            "name": req.name,
            "status": "pending",
            "created_ms": str(now_ms()),
            "fingerprint": fingerprint,
        }
        if self._create is None:
            self._create = self.ctx.redis.register_script(_CREATE_ONCE)
        flat = [part for pair in fields.items() for part in pair]
        stored = await self._create(keys=[rkey], args=flat)
        if stored and stored != fingerprint:
            raise KeyReused(request_id)
        await self.ctx.redis.zadd(keys.CALLBACKS_DUE, {request_id: int(req.slot_start.timestamp())})
        reply_channel = "sms" if self.ctx.settings.sms_enabled else self.name
        msg = inbound(
            self.name,
            f"tel:{req.phone}",
            req.summary(),
            request_id,
            kind="callback_request",
            meta={
                "callback_id": request_id,
                "slot_start": req.slot_start.isoformat(),
                "slot_end": req.slot_end.isoformat(),
                "reply_channel": reply_channel,
            },
        )
        result = await self.ctx.accept(msg)
        log.info("callback request recorded", extra={**msg.log_fields(), "duplicate": result.duplicate})
        return request_id

    def _page(self, template: str, values: dict[str, Any], errors: dict[str, str], status: int = 200) -> web.Response:
        html = self.ctx.templates.get_template(template).render(
            values=values,
            errors=errors,
            reasons=REASONS,
            slots=list(SLOTS),
            max_days=MAX_DAYS_AHEAD,
            request_key=values.get("request_key") or secrets.token_urlsafe(16),
        )
        return web.Response(text=html, content_type="text/html", status=status)


def _view(req: CallbackRequest) -> dict[str, str]:
    return {
        "day": req.slot_start.strftime("%d/%m/%Y"),
        "from": req.slot_start.strftime("%H h %M").replace(" 00", ""),
        "to": req.slot_end.strftime("%H h %M").replace(" 00", ""),
        "reason": REASONS[req.reason],
    }


def _error(field: str, message: str) -> web.Response:
    return web.json_response({"error": {"fields": [{"field": field, "message": message}]}}, status=400)
