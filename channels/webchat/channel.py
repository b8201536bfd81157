"""The web-chat channel.

Routes: the demo page ``/``, the widget ``/webchat/widget.js`` (+ css), ``POST /webchat/session``
(an anonymous signed token; the widget posts the token it kept, if any, and gets it back while
it is genuine, else a new one) and the WebSocket ``/webchat/ws?token=…&after=<entry id>``.

Delivery is durable and resumable. Everything shown in a session (the member's own messages
once accepted, as ``echo`` entries, and the replies, as ``message`` entries) is appended to the
session's Redis stream ``keys.webchat_outbox``; a socket replays it after the last entry id the
widget saw (``after``), then follows it. Each web process holds one pub/sub subscription that
wakes the sockets of a session when something is appended, so any process can answer any
socket; a socket also re-reads its outbox every 15 s in case a notification was missed.
A reconnect therefore neither loses nor repeats a message (within the outbox's last
``OUTBOX_MAXLEN`` entries, kept ``OUTBOX_TTL_S`` after the last one).

Exactly once on screen: an entry is appended at most once per client id (echo) or per outbound
message id (reply), atomically with the outbox (``keys.webchat_shown``), so a member's resend
after a lost ack, or the dispatcher's resend after a crash, shows nothing twice.

Frames, client -> server:
  ``{"type": "message", "client_id": "<8-64 chars>", "text": "…"}`` -> ``{"type": "ack",
  "client_id", "msg_id"}`` (``msg_id`` is the gateway's message id; deliberately not a stream
  id: the widget's resume point only moves with the outbox entries it was sent, in order);
  ``{"type": "seen", "id": "<entry id>"}`` once the widget has shown a reply.
Server -> client: outbox entries ``{"type": "message"|"echo", "id": "<entry id>", "text",
"msg_id", ...}`` and ``{"type": "error", "code", "message" (French), "client_id"}``.

Status: ``send`` answers ``sent`` (durably queued for the member's browser) with the external
id ``<session id>/<entry id>``; the widget's ``seen`` frame turns it into ``delivered``
through ``ctx.status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from aiohttp import WSCloseCode, WSMsgType, web
from redis.exceptions import RedisError

from channels.base import ChannelBase, ChannelContext
from channels.webchat.tokens import issue_token, verify_token
from gateway import keys
from gateway.envelope import Message, PermanentFailure, ProviderUnavailable, SendResult, StatusUpdate, inbound

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
MAX_TEXT = 4000
OUTBOX_MAXLEN = 2000
OUTBOX_TTL_S = 90 * 24 * 3600
PAGE = 200  # outbox entries read per round trip
POLL_S = 15.0  # a socket re-reads its outbox this often even without a notification

# Append an entry once per dedup key; the outbox and its index share the session's hash tag.
APPEND_ONCE = """
local prev = redis.call('HGET', KEYS[2], ARGV[1])
if prev then return prev end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 4))
redis.call('HSET', KEYS[2], ARGV[1], id)
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return id
"""

STORAGE_ERRORS = (RedisError, ConnectionError, OSError)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def error_frame(code: str, message: str, client_id: str | None = None) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, "client_id": client_id}


def external_id(session_id: str, entry_id: str) -> str:
    """The provider id of a reply: stream ids are only unique within one session's outbox."""
    return f"{session_id}/{entry_id}"


class _Unavailable(Exception):
    """Storage failed while handling a frame: the socket is closed so the widget resends."""


@dataclass(eq=False)
class _Socket:
    ws: web.WebSocketResponse
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class WebchatChannel(ChannelBase):
    name: ClassVar[str] = "webchat"

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        s = ctx.settings
        own = {_origin(s.public_url), _origin(s.base_url)}
        if s.host in ("127.0.0.1", "localhost"):
            own |= {f"http://localhost:{s.port}", f"http://127.0.0.1:{s.port}"}
        self.allowed_origins = own | {o.lower().rstrip("/") for o in s.webchat_allowed_origins}
        ws_origins = sorted({o.replace("http", "ws", 1) for o in own})
        self.csp = (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src 'self' {' '.join(ws_origins)}; frame-ancestors 'none'; base-uri 'none'; "
            "form-action 'self'; object-src 'none'"
        )
        self._sockets: dict[str, set[_Socket]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._append_script = ctx.redis.register_script(APPEND_ONCE)

    # Lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        if "web" in self.ctx.roles and self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="webchat-notify")

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._listener, timeout=5)
            self._listener = None
        await self.disconnect_all()

    async def disconnect_all(self) -> None:
        """Close every socket of this process ("going away"): the widgets reconnect elsewhere or later."""
        socks = [sock for socks in self._sockets.values() for sock in socks]
        for sock in socks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sock.ws.close(code=WSCloseCode.GOING_AWAY, message=b"restart"), timeout=2)

    def connected(self, session_id: str) -> int:
        """How many sockets of this process follow the session."""
        return len(self._sockets.get(session_id, ()))

    async def _listen(self) -> None:
        """One subscription per process: wake the sockets of a session that got an entry."""
        while True:
            pubsub = self.ctx.redis.pubsub()
            try:
                await pubsub.subscribe(keys.WEBCHAT_NOTIFY)
                # Sockets re-read their outbox after a (re)subscribe: nothing missed in between.
                self._wake_all()
                async for item in pubsub.listen():
                    if item.get("type") == "message":
                        for sock in self._sockets.get(str(item.get("data")), ()):
                            sock.wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("webchat subscription lost, retrying", extra={"error": type(exc).__name__})
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), timeout=2)

    def _wake_all(self) -> None:
        for socks in self._sockets.values():
            for sock in socks:
                sock.wake.set()

    # Sending -------------------------------------------------------------------------------
    async def send(self, msg: Message) -> SendResult:
        scheme, _, session_id = msg.urn.partition(":")
        if scheme != "webchat" or not session_id:
            raise PermanentFailure("not a web-chat address", code="bad_urn")
        entry = {"type": "message", "text": msg.text, "msg_id": msg.id, "ts": str(msg.created_ms)}
        try:
            entry_id = await self._append(session_id, f"m:{msg.id}", entry)
        except STORAGE_ERRORS as exc:
            raise ProviderUnavailable("web-chat outbox unavailable", code=type(exc).__name__) from exc
        return SendResult(external_id=external_id(session_id, entry_id), status="sent")

    async def _append(self, session_id: str, dedup: str, entry: dict[str, str]) -> str:
        """Add an entry to the session's outbox once per ``dedup`` and wake its sockets, wherever they are."""
        args: list[str | int] = [dedup, OUTBOX_MAXLEN, OUTBOX_TTL_S]
        for name, value in entry.items():
            args += [name, value]
        entry_id = await self._append_script(
            keys=[keys.webchat_outbox(session_id), keys.webchat_shown(session_id)], args=args
        )
        await self.ctx.redis.publish(keys.WEBCHAT_NOTIFY, session_id)
        return str(entry_id)

    # Routes --------------------------------------------------------------------------------
    def routes(self) -> web.RouteTableDef:
        routes = web.RouteTableDef()

        for path, (name, content_type, cache) in STATIC_ROUTES.items():
            routes.get(path)(self._static_handler(name, content_type, cache))

        @routes.post("/webchat/session")
        async def session(request: web.Request) -> web.Response:
            return await self.handle_session(request)

        @routes.get("/webchat/ws")
        async def socket(request: web.Request) -> web.StreamResponse:
            return await self.handle_socket(request)

        return routes

    def _origin_ok(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin", "").lower().rstrip("/")
        return bool(origin) and origin in self.allowed_origins

    async def handle_session(self, request: web.Request) -> web.Response:
        """A token for the widget: the one it kept while genuine (same conversation), else a new one."""
        if not self._origin_ok(request):
            return web.json_response({"error": "origin_refused"}, status=403)
        raw = await request.read()  # a plain-text body: no CORS preflight from other sites
        kept = ""
        with contextlib.suppress(ValueError):
            data = json.loads(raw) if raw and len(raw) <= 1024 else None
            if isinstance(data, dict) and isinstance(data.get("token"), str):
                kept = data["token"]
        secret = self.ctx.settings.secret_key
        resumed = verify_token(secret, kept) is not None
        token = kept if resumed else issue_token(secret)[1]
        headers = {
            "Cache-Control": "no-store",
            "Access-Control-Allow-Origin": request.headers["Origin"],
            "Vary": "Origin",
        }
        return web.json_response({"token": token, "resumed": resumed}, headers=headers)

    async def handle_socket(self, request: web.Request) -> web.StreamResponse:
        if not self._origin_ok(request):
            log.warning("webchat socket from a foreign origin refused", extra={"channel": self.name})
            return web.json_response({"error": "origin_refused"}, status=403)
        session_id = verify_token(self.ctx.settings.secret_key, request.query.get("token", ""))
        if session_id is None:
            return web.json_response({"error": "bad_token"}, status=403)
        after = request.query.get("after") or "0"
        if not _valid_stream_id(after):
            after = "0"
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=64 * 1024)
        await ws.prepare(request)
        sock = _Socket(ws)
        self._sockets.setdefault(session_id, set()).add(sock)
        pump = asyncio.create_task(self._pump(sock, session_id, after), name="webchat-pump")
        try:
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    continue
                try:
                    reply = await self._on_frame(session_id, frame.data)
                except _Unavailable:
                    await ws.send_json(error_frame("unavailable", "Service momentanément indisponible."))
                    await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"unavailable")
                    break
                if reply is not None:
                    await ws.send_json(reply)
        except ConnectionResetError:
            pass  # the member's browser went away mid-answer: it resends what was not acknowledged
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            socks = self._sockets.get(session_id)
            if socks is not None:
                socks.discard(sock)
                if not socks:
                    self._sockets.pop(session_id, None)
        return ws

    async def _pump(self, sock: _Socket, session_id: str, after: str) -> None:
        """Send the session's outbox entries after ``after``, then follow it."""
        key = keys.webchat_outbox(session_id)
        last = after
        try:
            while not sock.ws.closed:
                sock.wake.clear()
                entries = await self.ctx.redis.xrange(key, min=f"({last}" if last != "0" else "-", count=PAGE)
                for entry_id, fields in entries:
                    await sock.ws.send_json({**fields, "id": entry_id})
                    last = entry_id
                if len(entries) == PAGE:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(sock.wake.wait(), timeout=POLL_S)
        except asyncio.CancelledError:
            raise
        except ConnectionResetError:
            return
        except Exception as exc:
            # Storage trouble: close, the widget reconnects and resumes from the last entry it saw.
            log.warning("webchat outbox unreadable, closing socket", extra={"error": type(exc).__name__})
            with contextlib.suppress(Exception):
                await sock.ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"unavailable")

    async def _on_frame(self, session_id: str, data: str) -> dict[str, Any] | None:
        try:
            frame = json.loads(data)
        except ValueError:
            return error_frame("bad_json", "Message illisible.")
        if not isinstance(frame, dict):
            return error_frame("bad_frame", "Type de message inconnu.")
        if frame.get("type") == "seen":
            await self._on_seen(session_id, frame.get("id"))
            return None
        if frame.get("type") != "message":
            return error_frame("bad_frame", "Type de message inconnu.")
        client_id = frame.get("client_id")
        text = frame.get("text")
        if not isinstance(client_id, str) or not 8 <= len(client_id) <= 64 or not client_id.isprintable():
            return error_frame("bad_client_id", "Identifiant de message invalide.")
        if not isinstance(text, str) or not text.strip():
            return error_frame("empty", "Le message est vide.", client_id)
        if len(text) > MAX_TEXT:
            return error_frame("too_long", f"Le message dépasse {MAX_TEXT} caractères.", client_id)
        msg = inbound(self.name, f"webchat:{session_id}", text.strip(), client_id)
        try:
            result = await self.ctx.accept(msg)
            # Shown again after a reload: the member's side of the conversation, once per client id
            # (also when a resend finds the message already accepted but its echo not yet written).
            await self._append(
                session_id,
                f"c:{client_id}",
                {"type": "echo", "text": msg.text, "client_id": client_id, "msg_id": result.msg_id},
            )
        except STORAGE_ERRORS as exc:
            log.warning("webchat message not stored", extra={**msg.log_fields(), "error": type(exc).__name__})
            raise _Unavailable from exc
        return {"type": "ack", "client_id": client_id, "msg_id": result.msg_id}

    async def _on_seen(self, session_id: str, entry_id: object) -> None:
        """The widget showed a reply: it is delivered."""
        if not isinstance(entry_id, str) or "-" not in entry_id or not _valid_stream_id(entry_id):
            return
        try:
            entries = await self.ctx.redis.xrange(keys.webchat_outbox(session_id), min=entry_id, max=entry_id)
            if entries and entries[0][1].get("type") == "message":
                await self.ctx.status(StatusUpdate(self.name, external_id(session_id, entry_id), "delivered"))
        except STORAGE_ERRORS as exc:  # a receipt is worth less than the socket
            log.warning("webchat receipt not recorded", extra={"error": type(exc).__name__})

    def _static_handler(
        self, name: str, content_type: str, cache: str
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        body = (STATIC / name).read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        headers = {
            "Cache-Control": cache,
            "ETag": etag,
            "Content-Security-Policy": self.csp,
            "X-Content-Type-Options": "nosniff",
        }

        async def handler(request: web.Request) -> web.Response:
            if etag in request.headers.get("If-None-Match", ""):
                return web.Response(status=304, headers=headers)
            return web.Response(body=body, content_type=content_type, charset="utf-8", headers=headers)

        return handler


def _valid_stream_id(value: str) -> bool:
    first, _, second = value.partition("-")
    return first.isdigit() and (second == "" or second.isdigit()) and len(value) < 40


# path -> (file, content type, Cache-Control). The page is revalidated on each visit; the widget's
# files, whose URL embedding sites cannot version, are cached five minutes then revalidated (ETag).
STATIC_ROUTES = {
    "/": ("demo.html", "text/html", "no-cache"),
    "/webchat/widget.js": ("widget.js", "application/javascript", "public, max-age=300"),
    "/webchat/widget.css": ("widget.css", "text/css", "public, max-age=300"),
    "/webchat/demo.css": ("demo.css", "text/css", "public, max-age=300"),
}
