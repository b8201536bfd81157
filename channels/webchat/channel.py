"""The web-chat channel.

Routes: the demo page ``/``, the widget ``/webchat/widget.js`` (+ css), ``POST /webchat/session``
(an anonymous signed token), ``POST /webchat/session/end`` (« Terminer la conversation ») and the
WebSocket ``/webchat/ws?token=…&view=…``.

A session ends (``keys.webchat_session``): after ``WEBCHAT_IDLE_S`` without a message from the
visitor, after ``WEBCHAT_MAX_S`` in all, or when the visitor ends it; its token is then refused and
the widget starts a new one. A verification never outlives the page that made it: each page load of
the widget is a new ``view`` (a random id the page keeps in memory only), and a socket of a new view
withdraws any identity verification of the session's conversations (the bot asks again) and, once
the member's data was shown in the session (replies marked ``private``, agents' messages), replays
the earlier history as « contenu masqué ». A closed tab, a shared or public computer: the next person
to open the widget sees neither the answers nor a verified conversation.

Delivery is durable and resumable. Everything shown in a session (the member's own
messages once accepted, and the replies) is appended to the session's Redis stream
``keys.webchat_outbox``; a socket replays it after the last entry id the widget saw, then
follows it. Each web process holds one pub/sub subscription that wakes the sockets of a
session when ``send`` appends to it, so any process can answer any socket. A reconnect
therefore neither loses nor repeats a message, and the member's unacknowledged messages
are resent by the widget with the same client id (de-duplicated on accept).

An open socket costs only what it must (10,000 of them on one web process are the aim): no task
of its own while idle (a short one reads its outbox when woken), and one heartbeat for the whole
process instead of a timer per socket. The subscription is pinged when quiet, so a connection that
died silently is noticed and, once subscribed again, every socket re-reads its outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from aiohttp import WSCloseCode, WSMsgType, web
from redis.exceptions import RedisError

from channels.base import ChannelBase, ChannelContext
from channels.webchat.tokens import issue_token, verify_token
from gateway import jsonbody, keys
from gateway.envelope import BadRequest, Message, SendResult, inbound
from gateway.public_limits import client_address

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
MAX_TEXT = 4000
OUTBOX_MAXLEN = 2000
HEARTBEAT_S = 30.0  # a socket is pinged this often; one silent for a whole period after a ping is closed
SUBSCRIPTION_QUIET_S = 15.0  # the subscription is pinged after this long without a notification
SESSION_KEEP_S = 30 * 24 * 3600
ENDED_TEXTS = {
    "idle": "Conversation terminée après une période d'inactivité.",
    "max": "Conversation terminée : sa durée maximale est atteinte.",
    "ended": "Conversation terminée.",
}
# The demo page's policy (the gateway's own, stated here so the channel keeps it wherever it is
# mounted). 'self' covers the widget's same-origin ws:/wss: socket. The widget needs no framing: on a
# mutuelle's site it is a script tag and runs under that site's policy (see demo.html).
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; manifest-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def error_frame(code: str, message: str, client_id: str | None = None) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, "client_id": client_id}


class _Socket:
    """One open widget socket: where its replay stands. Slots: there may be 10,000 of these."""

    __slots__ = ("alive", "busy", "caught_up", "dirty", "last", "masked_upto", "pinged", "session_id", "ws")

    def __init__(self, ws: web.WebSocketResponse, session_id: str, last: str, *, mark: bool) -> None:
        self.ws = ws
        self.session_id = session_id
        self.last = last  # the last outbox entry id sent on this socket
        self.caught_up = not mark  # with ``mark``, a ``caught_up`` frame ends the replay
        self.busy = False  # its outbox is being read and sent
        self.dirty = False  # woken while busy: read again
        self.alive = True  # a frame (or pong) came since the last heartbeat ping
        self.pinged = False
        self.masked_upto: tuple[int, int] | None = None  # entries up to this one go as « contenu masqué »


class WebchatChannel(ChannelBase):
    name: ClassVar[str] = "webchat"

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        s = ctx.settings
        self.allowed_origins = {
            _origin(s.public_url),
            _origin(s.base_url),
            *(o.lower() for o in s.webchat_allowed_origins),
        }
        if s.host in ("127.0.0.1", "localhost"):
            self.allowed_origins |= {f"http://localhost:{s.port}", f"http://127.0.0.1:{s.port}"}
        self._sockets: dict[str, list[_Socket]] = {}  # session id -> its open sockets on this process
        self._drains: set[asyncio.Task[None]] = set()  # outbox reads in progress (kept referenced)
        self._append_once: Any = None  # the append-once script, registered on first use
        self._listener: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None

    # Lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        if "web" in self.ctx.roles:
            self._listener = asyncio.create_task(self._listen(), name="webchat-notify")
            self._heartbeat = asyncio.create_task(self._beat(), name="webchat-heartbeat")

    def _all(self) -> list[_Socket]:
        return [sock for socks in self._sockets.values() for sock in socks]

    async def shutdown(self) -> None:
        """Before the server waits for open requests: close the sockets (1001, the widget reconnects
        to another process or to this one once restarted) instead of holding the shutdown."""
        for sock in self._all():
            with contextlib.suppress(Exception):  # a client that never answers the close is not waited for
                await asyncio.wait_for(sock.ws.close(code=WSCloseCode.GOING_AWAY, message=b"restart"), timeout=1)

    async def stop(self) -> None:
        for task in (self._listener, self._heartbeat, *self._drains):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(task, timeout=5)

    async def _listen(self) -> None:
        """One subscription per process: wake the sockets of a session that got a message. Pinged when
        quiet; without an answer by the next quiet period it is taken as lost and made again."""
        while True:
            pubsub = self.ctx.redis.pubsub()
            try:
                await pubsub.subscribe(keys.WEBCHAT_NOTIFY)
                unanswered = False
                while True:
                    item = await pubsub.get_message(timeout=SUBSCRIPTION_QUIET_S)
                    if item is None:
                        if unanswered:
                            raise ConnectionError("the subscription did not answer its ping")
                        await pubsub.ping()
                        unanswered = True
                        continue
                    unanswered = False
                    if item.get("type") == "subscribe":
                        # Subscribed, or subscribed again after the client reconnected by itself:
                        # whatever was appended while there was no subscription is read now.
                        self._wake_all()
                    elif item.get("type") == "message":
                        for sock in self._sockets.get(str(item.get("data")), ()):
                            self._wake(sock)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("webchat subscription lost, retrying", extra={"error": type(exc).__name__})
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), timeout=2)

    async def _beat(self) -> None:
        """One heartbeat for every socket of the process (a timer per socket costs memory at 10,000):
        each period, a socket that showed no sign of life since the last ping is closed, the others
        are pinged. A browser answers pings by itself."""
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            with contextlib.suppress(RedisError):
                await self._end_lapsed()
            for sock in self._all():
                if sock.ws.closed:
                    continue
                if sock.pinged and not sock.alive:
                    self._spawn(sock.ws.close(code=WSCloseCode.ABNORMAL_CLOSURE, message=b"no answer"))
                    continue
                sock.alive, sock.pinged = False, True
                # A socket closing meanwhile is ended by its reader; one not reading does not hold the others.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(sock.ws.ping(), timeout=1)

    async def _end_lapsed(self) -> None:
        """Sessions open here that lapsed (idle or too long) are ended now, not at the visitor's next
        message: the widget is told, the panel emptied. One pipelined read per 500 sessions."""
        ids = list(self._sockets)
        now = _now_ms()
        for start in range(0, len(ids), 500):
            batch = ids[start : start + 500]
            async with self.ctx.redis.pipeline(transaction=False) as pipe:
                for session_id in batch:
                    pipe.hmget(keys.webchat_session(session_id), ["created_ms", "last_ms", "ended"])
                rows = await pipe.execute()
            for session_id, (created, last, ended) in zip(batch, rows, strict=True):
                if ended or not created:
                    continue
                if self._lapsed(now, created, last) is not None:
                    await self.session_over(session_id)  # ends it (and wakes its sockets) if still so

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    def _wake_all(self) -> None:
        for sock in self._all():
            self._wake(sock)

    def _wake(self, sock: _Socket) -> None:
        """The socket's outbox has something new: read it now, or again once the read in progress ends."""
        if sock.busy:
            sock.dirty = True
        elif not sock.ws.closed:
            self._spawn(self._drain(sock))

    async def _drain(self, sock: _Socket) -> None:
        """Send the socket's outbox entries after the last one sent, until there is nothing new. With
        the widget's ``mark``, a ``caught_up`` frame (no id) ends the first replay: the widget announces
        to screen readers only what comes after it."""
        if sock.busy:
            sock.dirty = True
            return
        sock.busy = True
        key = keys.webchat_outbox(sock.session_id)
        try:
            while not sock.ws.closed:
                sock.dirty = False
                why = await self.session_over(sock.session_id)
                if why is not None:  # said once, then the socket closes (the widget starts anew)
                    message = ENDED_TEXTS.get(why, ENDED_TEXTS["ended"])
                    await sock.ws.send_json({"type": "ended", "reason": why, "message": message})
                    await sock.ws.close(code=4401, message=b"session ended")
                    return
                last = sock.last
                entries = await self.ctx.redis.xrange(key, min=f"({last}" if last != "0" else "-", count=200)
                for entry_id, fields in entries:
                    if sock.masked_upto is not None and _stream_key(entry_id) <= sock.masked_upto:
                        shown = {k: v for k, v in fields.items() if k not in ("text", "speaker")}
                        await sock.ws.send_json({**shown, "masked": "1", "id": entry_id})
                    else:
                        await sock.ws.send_json({**fields, "id": entry_id})
                    sock.last = entry_id
                if len(entries) == 200:
                    continue
                if not sock.caught_up:
                    sock.caught_up = True
                    await sock.ws.send_json({"type": "caught_up"})
                if not sock.dirty:
                    break
        except ConnectionError:
            pass  # the socket went: its reader ends it
        except RedisError as exc:
            # The next notification (or the resubscribe after an outage) reads it again.
            log.warning("webchat outbox unreadable", extra={"error": type(exc).__name__})
        finally:
            sock.busy = False

    # Sending -------------------------------------------------------------------------------
    async def send(self, msg: Message) -> SendResult:
        session_id = msg.urn.removeprefix("webchat:")
        entry = {"type": "message", "text": msg.text, "msg_id": msg.id, "ts": str(msg.created_ms)}
        speaker = msg.meta.get("speaker")
        if isinstance(speaker, str) and speaker:  # an agent's message: the widget names them, not « Assistant »
            entry["from"] = "agent"
            entry["speaker"] = speaker[:80]
        if msg.meta.get("private") or entry.get("from") == "agent":  # may hold the member's data
            entry["private"] = "1"
            await self.ctx.redis.hset(keys.webchat_session(session_id), "private", "1")
        entry_id = await self._append(session_id, entry, once_key=f"m:{msg.id}")
        return SendResult(external_id=entry_id, status="sent")

    async def _append(self, session_id: str, entry: dict[str, str], *, once_key: str) -> str:
        """Add an entry to the session's outbox once per ``once_key`` (a retried send is shown once)
        and wake its sockets, wherever they are."""
        if self._append_once is None:
            self._append_once = self.ctx.redis.register_script(_APPEND_ONCE)
        flat = [part for pair in entry.items() for part in pair]
        entry_id = await self._append_once(
            keys=[keys.webchat_outbox(session_id), keys.webchat_shown(session_id)],
            args=[once_key, OUTBOX_MAXLEN, 30 * 24 * 3600, *flat],
        )
        await self.ctx.redis.publish(keys.WEBCHAT_NOTIFY, session_id)
        return str(entry_id)

    # Routes --------------------------------------------------------------------------------
    def routes(self) -> web.RouteTableDef:
        routes = web.RouteTableDef()

        for path, (name, content_type) in STATIC_ROUTES.items():
            routes.get(path)(_static_handler(name, content_type))

        @routes.post("/webchat/session")
        async def session(request: web.Request) -> web.Response:
            if not self._origin_ok(request):
                return web.json_response({"error": "origin_refused"}, status=403)
            # A widget whose socket keeps failing sends its saved token: kept if still valid (the
            # member keeps the conversation), else a new session (e.g. after a key change).
            saved = ""
            if request.can_read_body:
                with contextlib.suppress(BadRequest):  # unreadable: a new session, as without a body
                    body = jsonbody.loads(await request.read())
                    token = body.get("token") if isinstance(body, dict) else None
                    saved = token[:300] if isinstance(token, str) else ""
            secret = self.ctx.settings.secret_key
            saved_id = verify_token(secret, saved) if saved else None
            if saved_id is not None and await self.session_over(saved_id) is None:
                token = saved
            else:
                new_id, token = issue_token(secret)
                await self.session_over(new_id)  # starts its clock
            headers = {
                "Cache-Control": "no-store",
                "Access-Control-Allow-Origin": request.headers["Origin"],
                "Vary": "Origin",
            }
            return web.json_response({"token": token}, headers=headers)

        @routes.post("/webchat/session/end")
        async def end(request: web.Request) -> web.Response:
            """« Terminer la conversation »: the session's token is refused from now on."""
            if not self._origin_ok(request):
                return web.json_response({"error": "origin_refused"}, status=403)
            try:
                body = jsonbody.loads(await request.read())
            except BadRequest:
                body = None
            token = body.get("token") if isinstance(body, dict) else None
            session_id = verify_token(self.ctx.settings.secret_key, token[:300]) if isinstance(token, str) else None
            if session_id is None:
                return web.json_response({"error": "bad_token"}, status=400)
            await self.end_session(session_id, "ended")
            headers = {"Cache-Control": "no-store", "Access-Control-Allow-Origin": request.headers["Origin"],
                       "Vary": "Origin"}  # fmt: skip
            return web.json_response({"ended": True}, headers=headers)

        # The handler itself, not a wrapper: its frame lives as long as the socket.
        routes.get("/webchat/ws")(self.handle_socket)

        return routes

    def _origin_ok(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin", "").lower().rstrip("/")
        return bool(origin) and origin in self.allowed_origins

    async def handle_socket(self, request: web.Request) -> web.StreamResponse:
        if not self._origin_ok(request):
            log.warning("webchat socket from a foreign origin refused", extra={"channel": self.name})
            return web.json_response({"error": "origin_refused"}, status=403)
        session_id = verify_token(self.ctx.settings.secret_key, request.query.get("token", ""))
        if session_id is None:
            return web.json_response({"error": "bad_token"}, status=403)
        if await self.session_over(session_id) is not None:
            return web.json_response({"error": "session_ended"}, status=403)
        after = request.query.get("after") or "0"
        if not _valid_stream_id(after):
            after = "0"
        masked_upto = await self._new_view(session_id, request.query.get("view", "")[:64])
        source = self.source(request)
        # autoping off: pings and pongs come to the loop below, which counts them as signs of life for
        # the process's one heartbeat (_beat) and answers pings itself. No permessage-deflate (browsers
        # offer it): a compressor keeps ~90 KiB per socket, for frames of a few hundred bytes.
        ws = web.WebSocketResponse(autoping=False, compress=False, max_msg_size=64 * 1024)
        await ws.prepare(request)
        # The widget asks (mark=1) for the end of the replay to be marked.
        sock = _Socket(ws, session_id, after, mark=request.query.get("mark") == "1")
        sock.masked_upto = _stream_key(masked_upto) if masked_upto else None
        self._sockets.setdefault(session_id, []).append(sock)
        try:
            await self._drain(sock)
            while True:  # not ``async for``: one coroutine frame less per socket
                frame = await ws.receive()
                if frame.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
                sock.alive = True
                if frame.type == WSMsgType.PING:
                    await ws.pong(frame.data)
                elif frame.type == WSMsgType.TEXT:
                    reply = await self._on_frame(session_id, frame.data, source)
                    if reply is not None:
                        with contextlib.suppress(ConnectionResetError):  # the visitor left meanwhile
                            await ws.send_json(reply)
        finally:
            socks = self._sockets.get(session_id)
            if socks is not None:
                with contextlib.suppress(ValueError):
                    socks.remove(sock)
                if not socks:
                    self._sockets.pop(session_id, None)
        return ws

    # Session lifetimes ------------------------------------------------------------------------
    async def session_over(self, session_id: str) -> str | None:
        """Why the session is over (``idle``, ``max``, ``ended``), or None while it lasts. A session
        first seen here (a token issued before sessions had lifetimes) starts its clock now."""
        key = keys.webchat_session(session_id)
        created, last, ended = await self.ctx.redis.hmget(key, ["created_ms", "last_ms", "ended"])
        if ended:
            return str(ended)
        now = _now_ms()
        if not created:
            await self.ctx.redis.hset(key, mapping={"created_ms": now, "last_ms": now})
            await self.ctx.redis.expire(key, SESSION_KEEP_S)
            return None
        why = self._lapsed(now, created, last)
        if why is not None:
            await self.end_session(session_id, why)
        return why

    def _lapsed(self, now: int, created: str, last: str | None) -> str | None:
        """``max`` past the absolute lifetime, ``idle`` past the idle time since the visitor's last message."""
        s = self.ctx.settings
        if now - int(created) > s.webchat_max_s * 1000:
            return "max"
        if now - int(last or created) > s.webchat_idle_s * 1000:
            return "idle"
        return None

    async def end_session(self, session_id: str, why: str) -> None:
        """The session is over: its token is refused, its verifications withdrawn, its sockets told."""
        key = keys.webchat_session(session_id)
        await self.ctx.redis.hset(key, mapping={"ended": why, "ended_ms": _now_ms()})
        await self.ctx.redis.expire(key, SESSION_KEEP_S)
        await self._withdraw_verification(session_id)
        await self.ctx.redis.publish(keys.WEBCHAT_NOTIFY, session_id)
        log.info("webchat session ended", extra={"channel": self.name, "reason": why})

    async def _withdraw_verification(self, session_id: str) -> None:
        """The bot asks who the visitor is again: a verification made in another page, or before the
        session ended, proves nothing about whoever holds the browser now."""
        contact = await self.ctx.redis.get(keys.address(f"webchat:{session_id}"))
        if not contact:
            return
        for conv in await self.ctx.redis.zrange(keys.contact_conversations(str(contact)), 0, -1):
            if await self.ctx.redis.hexists(keys.conversation(conv), "verified_until_ms"):
                await self.ctx.redis.hset(keys.conversation(conv), "verified_until_ms", "0")

    async def _new_view(self, session_id: str, view: str) -> str | None:
        """A socket from a page load the session has not seen: verifications withdrawn and, once the
        member's data was shown, the history up to now masked (returns the last entry id to mask)."""
        key = keys.webchat_session(session_id)
        previous, private = await self.ctx.redis.hmget(key, ["view", "private"])
        await self.ctx.redis.hset(key, mapping={"view": view, "last_ms": _now_ms()})
        if view and previous == view:
            return None  # the same page reconnecting (a network blip): nothing to hide from it
        await self._withdraw_verification(session_id)
        if not private:
            return None
        last = await self.ctx.redis.xrevrange(keys.webchat_outbox(session_id), count=1)
        return str(last[0][0]) if last else None

    def source(self, request: web.Request) -> str:
        """The visitor's address as a keyed digest (one-time codes are limited per address; the
        address itself is personal data and is kept nowhere)."""
        address = client_address(request, self.ctx.settings.trusted_proxy_hops)
        mac = hmac.new(self.ctx.settings.secret_key.encode(), f"source:{address}".encode(), hashlib.sha256)
        return "webchat-ip:" + mac.hexdigest()[:20]

    async def _on_frame(self, session_id: str, data: str, source: str = "") -> dict[str, Any] | None:
        try:
            frame = jsonbody.loads(data)
        except BadRequest:
            return error_frame("bad_json", "Message illisible.")
        if not isinstance(frame, dict) or frame.get("type") != "message":
            return error_frame("bad_frame", "Type de message inconnu.")
        client_id = frame.get("client_id")
        text = frame.get("text")
        if not isinstance(client_id, str) or not 8 <= len(client_id) <= 64:
            return error_frame("bad_client_id", "Identifiant de message invalide.")
        if not isinstance(text, str) or not text.strip():
            return error_frame("empty", "Le message est vide.", client_id)
        if len(text) > MAX_TEXT:
            return error_frame("too_long", f"Le message dépasse {MAX_TEXT} caractères.", client_id)
        why = await self.session_over(session_id)
        if why is not None:  # the pump tells the widget and closes the socket
            await self.ctx.redis.publish(keys.WEBCHAT_NOTIFY, session_id)
            return error_frame("session_ended", ENDED_TEXTS.get(why, ENDED_TEXTS["ended"]), client_id)
        await self.ctx.redis.hset(keys.webchat_session(session_id), "last_ms", _now_ms())
        urn = f"webchat:{session_id}"
        # Keyed by session too: a client id only has to be unique within its own session.
        meta = {"source": source} if source else {}
        msg = inbound(self.name, urn, text.strip(), f"{session_id}/{client_id}", meta=meta)
        try:
            result = await self.ctx.accept(msg)
            if not result.duplicate:
                # Shown again after a reload: the member's side of the conversation.
                await self._append(
                    session_id,
                    {"type": "echo", "text": msg.text, "client_id": client_id, "msg_id": result.msg_id},
                    once_key=f"e:{client_id}",
                )
        except RedisError as exc:
            # Not acknowledged: the widget keeps the message and sends it again (same client id).
            log.error("webchat message not stored", extra={"error": type(exc).__name__})
            return error_frame(
                "unavailable", "Service momentanément indisponible, réessayez dans un instant.", client_id
            )
        return {"type": "ack", "client_id": client_id, "msg_id": result.msg_id}


# KEYS: outbox stream, shown hash (same session slot). ARGV: once key, maxlen, ttl, field, value, ...
_APPEND_ONCE = """
local existing = redis.call('HGET', KEYS[2], ARGV[1])
if existing then return existing end
local fields = {}
for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(fields))
redis.call('HSET', KEYS[2], ARGV[1], id)
redis.call('EXPIRE', KEYS[2], ARGV[3])
return id
"""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _stream_key(entry_id: str) -> tuple[int, int]:
    first, _, second = entry_id.partition("-")
    return int(first or 0), int(second or 0)


def _valid_stream_id(value: str) -> bool:
    first, _, second = value.partition("-")
    return first.isdigit() and (second == "" or second.isdigit()) and len(value) < 40


STATIC_ROUTES = {
    "/": ("demo.html", "text/html"),
    "/webchat/widget.js": ("widget.js", "application/javascript"),
    "/webchat/widget.css": ("widget.css", "text/css"),
    "/webchat/demo.css": ("demo.css", "text/css"),
}


def _static_handler(name: str, content_type: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    body = (STATIC / name).read_bytes()
    headers = {"Cache-Control": "no-cache", "Content-Security-Policy": CSP}

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type, charset="utf-8", headers=headers)

    return handler
