"""The callback channel: ``GET/POST /callback`` (an HTML form that works without JavaScript)
and ``POST /api/callbacks`` (JSON).

A request is stored for the agents' queue (``keys.callback`` hash, ``keys.CALLBACKS_DUE``
sorted by slot start) and accepted into the inbound stream like any message, so it joins
the member's contact and conversation. A double submit creates one request: the form
carries a one-time key and the API takes an ``Idempotency-Key`` header.

The member's confirmation is the answer itself (page or JSON) and, when SMS is enabled, an
SMS: the inbound message asks the router to reply on the ``sms`` channel. Without SMS the
reply is recorded on the ``callback`` channel as shown on the page. Both give the request's short
reference (``RAP-7K4Q``, ``gateway/callback_refs.py``), which a person can read over the phone.

Slots come from the opening hours (``Settings.opening_hours``). Only accepted requests count
against the per-address limit; refused ones (mistakes) have a looser limit of their own; a refusal
for either is the form again, with what was typed and how long to wait.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from aiohttp import web

from channels.base import ChannelBase
from channels.callback.validation import MAX_DAYS_AHEAD, PARIS, REASONS, CallbackRequest, ValidationError, validate
from gateway import callback_refs, jsonbody, keys
from gateway.envelope import BadRequest, Message, SendResult, inbound, now_ms
from gateway.hours import DAY_NAMES
from gateway.public_limits import TOO_MANY, CallbackLimits, wait_wording
from gateway.ratelimit import RateLimiter

log = logging.getLogger(__name__)

MAX_KEY = 100
STATIC = Path(__file__).resolve().parent / "static"
STATIC_FILES = {"callback.js": "application/javascript", "callback.css": "text/css"}
FORM = "callback/form.html.j2"


@dataclass(frozen=True, slots=True)
class Recorded:
    id: str  # the request's key (cb + 22 hex)
    reference: str  # RAP-7K4Q, what the member quotes


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
    _limits: CallbackLimits | None = None

    async def send(self, msg: Message) -> SendResult:
        # The confirmation was shown on the page or in the API answer when the request was made.
        return SendResult(status="delivered", meta={"via": "page"})

    def routes(self) -> web.RouteTableDef:
        routes = web.RouteTableDef()

        @routes.get("/callback")
        async def form(request: web.Request) -> web.Response:
            return self._page(FORM, values=self._prefill(request.query), errors={})

        for name, content_type in STATIC_FILES.items():
            routes.get(f"/callback/static/{name}")(_static(name, content_type))

        @routes.post("/callback")
        async def submit(request: web.Request) -> web.Response:
            try:
                data = dict(await request.post())
            except ValueError:  # e.g. multipart without a boundary, undecodable form
                wait = await self.limits.acquire(request, accepted=False)
                if wait > 0:
                    return self._refused({}, {}, wait)
                return self._page(FORM, values={}, errors={"form": "Formulaire illisible."}, status=400)
            fields = {k: v for k, v in data.items() if isinstance(v, str)}
            key = fields.get("request_key", "")
            if not key or len(key) > MAX_KEY:
                key = fields["request_key"] = secrets.token_urlsafe(16)
            try:
                req = validate(fields, hours=self.ctx.settings.opening_hours)
            except ValidationError as exc:
                wait = await self.limits.acquire(request, accepted=False)
                if wait > 0:
                    return self._refused(fields, exc.errors, wait)
                return self._page(FORM, values=fields, errors=exc.errors, status=400)
            if not await self._known(key):  # a double submit is not a new request
                wait = await self.limits.acquire(request, accepted=True)
                if wait > 0:
                    return self._refused(fields, {}, wait)
            try:
                done = await self.record(req, key)
            except KeyReused:  # the page went back and was sent again, changed: a new request
                done = await self.record(req, secrets.token_urlsafe(16))
            values = {"request_id": done.id, "reference": done.reference, **_view(req)}
            return self._page("callback/done.html.j2", values=values, errors={})

        @routes.post("/api/callbacks")
        async def api(request: web.Request) -> web.Response:
            reason = "Le corps de la requête doit être un objet JSON."
            try:
                data = jsonbody.loads(await request.read())
            except BadRequest as exc:  # unreadable, too deep, invalid UTF-8...: the shared reader's reason
                data, reason = None, f"Le corps de la requête doit être du JSON lisible ({exc})."
            key = request.headers.get("Idempotency-Key", "")
            if not isinstance(data, dict) or len(key) > MAX_KEY:
                wait = await self.limits.acquire(request, accepted=False)
                if wait > 0:
                    return _too_many(wait)
                if len(key) > MAX_KEY:
                    return _error("Idempotency-Key", f"La clé dépasse {MAX_KEY} caractères.")
                return _error("body", reason)
            try:
                req = validate(data, hours=self.ctx.settings.opening_hours)
            except ValidationError as exc:
                wait = await self.limits.acquire(request, accepted=False)
                if wait > 0:
                    return _too_many(wait)
                return web.json_response(
                    {"error": {"fields": [{"field": f, "message": m} for f, m in exc.errors.items()]}}, status=400
                )
            replayed = bool(key) and await self._known(key)
            if not replayed:
                wait = await self.limits.acquire(request, accepted=True)
                if wait > 0:
                    return _too_many(wait)
            try:
                done = await self.record(req, key or secrets.token_urlsafe(16))
            except KeyReused:
                return web.json_response(
                    {"error": {"code": "idempotency_key_reused",
                               "message": "Cette clé a déjà servi pour une autre demande de rappel."}},
                    status=422,
                )  # fmt: skip
            return web.json_response(
                {
                    "id": done.id,
                    "reference": done.reference,
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

    @property
    def limits(self) -> CallbackLimits:
        if self._limits is None:
            self._limits = CallbackLimits(self.ctx.settings, RateLimiter(self.ctx.redis))
        return self._limits

    async def _known(self, key: str) -> bool:
        return bool(await self.ctx.redis.exists(keys.callback(request_id_for(key))))

    async def record(self, req: CallbackRequest, key: str) -> Recorded:
        """Store the request once per key and accept it into the inbound stream.

        Raises ``KeyReused`` when the key already names a different request (not a double submit)."""
        request_id = request_id_for(key)
        rkey = keys.callback(request_id)
        fingerprint = req.fingerprint()
        reference = await callback_refs.claim(self.ctx.redis, request_id)
        fields = {
            "id": request_id,
            "ref": reference,
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
        pending = True
        if stored is not None:  # it existed: keep its reference, give ours back
            await callback_refs.release(self.ctx.redis, reference, request_id)
            if stored != fingerprint:
                raise KeyReused(request_id)
            existing = await self.ctx.redis.hmget(rkey, ["ref", "status"])
            reference, pending = existing[0] or "", existing[1] == "pending"
            if not reference:  # stored before short references existed: it gets one now
                reference = await callback_refs.claim(self.ctx.redis, request_id)
                await self.ctx.redis.hset(rkey, "ref", reference)
        if pending:  # (again after a crash just before; a replay never moves a retry or revives a done call)
            await self.ctx.redis.zadd(keys.CALLBACKS_DUE, {request_id: int(req.slot_start.timestamp())}, nx=True)
        reply_channel = "sms" if self.ctx.settings.sms_enabled else self.name
        msg = inbound(
            self.name,
            f"tel:{req.phone}",
            req.summary(),
            request_id,
            kind="callback_request",
            meta={
                "callback_id": request_id,
                "reference": reference,
                "slot_start": req.slot_start.isoformat(),
                "slot_end": req.slot_end.isoformat(),
                "reply_channel": reply_channel,
            },
        )
        result = await self.ctx.accept(msg)
        log.info("callback request recorded", extra={**msg.log_fields(), "duplicate": result.duplicate})
        return Recorded(request_id, reference)

    def _refused(self, values: dict[str, str], errors: dict[str, str], wait: float) -> web.Response:
        """Too many requests from this address: the form again, with what was typed and the wait."""
        refusal = (
            f"Trop de demandes depuis votre connexion : merci de réessayer dans {wait_wording(wait)}. "
            "Ce que vous avez saisi est conservé ci-dessous."
        )
        response = self._page(FORM, values=values, errors=errors, status=429, refusal=refusal)
        response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return response

    def _prefill(self, query: Any) -> dict[str, str]:
        """What a link may prefill (the bot's « rappelez-moi demain matin »): ``date`` (AAAA-MM-JJ) and
        ``slot``, or ``period=matin|apres-midi`` for the first slot of that half-day; anything else is
        ignored (the member still chooses and submits)."""
        values: dict[str, str] = {}
        try:
            day = dt.date.fromisoformat(str(query.get("date", "")))
        except ValueError:
            return values
        values["date"] = day.isoformat()
        slots = self.ctx.settings.opening_hours.slots_on(day)
        wanted = str(query.get("slot", ""))
        period = str(query.get("period", ""))
        if any(s.key == wanted for s in slots):
            values["slot"] = wanted
        elif period in ("matin", "apres-midi"):
            morning = period == "matin"
            chosen = next((s for s in slots if (s.start < dt.time(12)) == morning), None)
            if chosen is not None:
                values["slot"] = chosen.key
        return values

    def _page(
        self, template: str, values: dict[str, Any], errors: dict[str, str], status: int = 200, refusal: str = ""
    ) -> web.Response:
        hours = self.ctx.settings.opening_hours
        today = dt.datetime.now(PARIS).date()
        html = self.ctx.templates.get_template(template).render(
            values=values,
            errors=errors,
            refusal=refusal,
            reasons=REASONS,
            slots=[(s.key, s.label) for s in hours.all_slots()],
            hours=hours.describe(),
            max_days=MAX_DAYS_AHEAD,
            first_day=today.isoformat(),
            last_day=(today + dt.timedelta(days=MAX_DAYS_AHEAD)).isoformat(),
            request_key=values.get("request_key") or secrets.token_urlsafe(16),
        )
        return web.Response(text=html, content_type="text/html", status=status)


def _view(req: CallbackRequest) -> dict[str, str]:
    return {
        "weekday": DAY_NAMES[req.slot_start.weekday()],
        "day": req.slot_start.strftime("%d/%m/%Y"),
        "from": req.slot_start.strftime("%H h %M").replace(" 00", ""),
        "to": req.slot_end.strftime("%H h %M").replace(" 00", ""),
        "reason": REASONS[req.reason],
    }


def _too_many(wait: float) -> web.Response:
    body = {"error": "rate_limited", "detail": TOO_MANY, "retry_after_s": math.ceil(wait)}
    return web.json_response(body, status=429, headers={"Retry-After": str(max(1, math.ceil(wait)))})


def _static(name: str, content_type: str) -> Any:
    body = (STATIC / name).read_bytes()

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type, charset="utf-8",
                            headers={"Cache-Control": "no-cache"})  # fmt: skip

    return handler


def _error(field: str, message: str) -> web.Response:
    return web.json_response({"error": {"fields": [{"field": field, "message": message}]}}, status=400)
