"""A loopback fake of Twilio's Messages API, and helpers to sign webhooks like Twilio.

Speaks the wire format of ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``
(form body, HTTP basic auth with the account SID and auth token, JSON Message resource
or Twilio's JSON error in return), so the real ``twilio`` library talks to it unchanged::

    async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
        env["TWILIO_API_BASE"] = fake.base_url           # http://127.0.0.1:<port>
        ...                                               # the gateway sends an SMS
        [sent] = await fake.wait_for(1, timeout=5)        # no sleeping
        assert sent.to == "+33639980001" and "remboursement" in sent.body
        await fake.deliver_callbacks(sid=sent.sid)        # signed queued -> sent -> delivered

Fault injection (each fault answers the next request, in order)::

    fake.inject(status=503)                               # a 5xx
    fake.inject(n=2, status=429, code=20429, retry_after=7)
    fake.inject(status=400, code=21610)                   # unsubscribed recipient
    fake.inject(delay=3.0)                                # slow, then a normal answer
    fake.inject(drop=True)                                # connection closed, no answer
    fake.block("+33639980001")                            # 21610 for this number, every time

Webhooks as Twilio sends them: ``inbound_params(...)`` builds a realistic incoming-SMS
form and ``signed_inbound(public_url, path, auth_token, params)`` returns the headers and
body to POST, signed with twilio's own ``RequestValidator``.

WhatsApp (same API, ``whatsapp:`` addresses)::

    params = fake.whatsapp_inbound("+33639980001", "Bonjour", profile_name="Jeanne")  # opens the window
    fake.approve_template("HX...", "Information de votre mutuelle : {{1}}")
    ...                                                   # free text inside the 24 h window;
    [sent] = await fake.wait_for(1)                       # outside it, ContentSid + ContentVariables
    await fake.deliver_callbacks(sid=sent.sid)            # free text outside the window:
                                                          #   queued -> failed, ErrorCode 63016
    fake.expire_window("+33639980001")                    # 24 h passed at WhatsApp

Voice (tests/fakes/twilio_voice.py): ``PhoneCall(fake, product_url, number, stir=...)`` is a member's call
run as Twilio runs it (signed webhooks, Gather, Redirect, Enqueue); ``POST .../Calls.json`` places a leg
that ``fake.voice`` rings (status callbacks, its TwiML fetched, ``<Dial><Queue>`` bridging the caller,
``<Dial><Number>`` with ``DialCallStatus``); ``fake.voice.behaviour[number] = "no-answer"`` or ``"busy"``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import secrets
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

API_VERSION = "2010-04-01"
ERROR_DOCS = "https://www.twilio.com/docs/errors/"

# Messages of Twilio's documented error codes, as its API returns them.
ERROR_MESSAGES = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    21205: "Url parameter is required.",
    21211: "The 'To' number is not a valid phone number.",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    21619: "A text message body or media urls must be specified.",
    21655: "The ContentSid is Invalid.",
    21656: "The ContentVariables Parameter is invalid.",
    63007: "Twilio could not find a Channel with the specified From address",
}
WHATSAPP = "whatsapp:"
WINDOW_S = 24 * 3600  # WhatsApp's customer-service window
OUTSIDE_WINDOW = "63016"  # free text outside the window: accepted, then failed in the status callback


def new_sid(prefix: str = "SM") -> str:
    """A fresh Twilio-style SID: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


def inbound_params(
    from_: str,
    body: str,
    *,
    to: str = "+33700000000",
    sid: str | None = None,
    account_sid: str = "AC" + "0" * 32,
    messaging_service_sid: str | None = None,
    media: Iterable[tuple[str, str]] = (),
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The form Twilio posts for an incoming SMS (or MMS with ``media`` = (url, type) pairs)."""
    media = list(media)
    sid = sid or new_sid("MM" if media else "SM")
    params = {
        "ToCountry": "FR",
        "ToState": "",
        "SmsMessageSid": sid,
        "NumMedia": str(len(media)),
        "ToCity": "",
        "FromZip": "",
        "SmsSid": sid,
        "FromState": "",
        "SmsStatus": "received",
        "FromCity": "",
        "Body": body,
        "FromCountry": "FR",
        "To": to,
        "ToZip": "",
        "NumSegments": "1",
        "ReferralNumMedia": "0",
        "MessageSid": sid,
        "AccountSid": account_sid,
        "From": from_,
        "ApiVersion": API_VERSION,
    }
    if messaging_service_sid:
        params["MessagingServiceSid"] = messaging_service_sid
    for i, (url, content_type) in enumerate(media):
        params[f"MediaContentType{i}"] = content_type
        params[f"MediaUrl{i}"] = url
    params.update(extra or {})
    return params


def whatsapp_params(
    from_: str,
    body: str,
    *,
    to: str = "+33700000000",
    profile_name: str = "Jeanne",
    sid: str | None = None,
    account_sid: str = "AC" + "0" * 32,
    media: Iterable[tuple[str, str]] = (),
    message_type: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The form Twilio posts for an incoming WhatsApp message: ``whatsapp:`` addresses,
    ``ProfileName``, ``WaId`` (the number without "+") and ``MessageType``."""
    media = list(media)
    sid = sid or new_sid("MM" if media else "SM")
    params = {
        "SmsMessageSid": sid,
        "NumMedia": str(len(media)),
        "ProfileName": profile_name,
        "MessageType": message_type or ("image" if media else "text"),
        "SmsSid": sid,
        "WaId": from_.removeprefix(WHATSAPP).lstrip("+"),
        "SmsStatus": "received",
        "Body": body,
        "To": to if to.startswith(WHATSAPP) else WHATSAPP + to,
        "NumSegments": "1",
        "ReferralNumMedia": "0",
        "MessageSid": sid,
        "AccountSid": account_sid,
        "From": from_ if from_.startswith(WHATSAPP) else WHATSAPP + from_,
        "ApiVersion": API_VERSION,
    }
    for i, (url, content_type) in enumerate(media):
        params[f"MediaContentType{i}"] = content_type
        params[f"MediaUrl{i}"] = url
    params.update(extra or {})
    return params


def sign(url: str, auth_token: str, params: Mapping[str, str]) -> str:
    return str(RequestValidator(auth_token).compute_signature(url, dict(params)))


def signed_inbound(
    public_url: str, path: str, auth_token: str, params: Mapping[str, str]
) -> tuple[dict[str, str], bytes]:
    """Headers and body of a webhook as Twilio posts it to ``public_url + path``.

    ``path`` may carry a query string; Twilio signs the full URL it was configured with.
    """
    url = public_url.rstrip("/") + path
    headers = {
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
        "X-Twilio-Signature": sign(url, auth_token, params),
        "User-Agent": "TwilioProxy/1.1",
        "I-Twilio-Idempotency-Token": secrets.token_hex(16),
    }
    return headers, urllib.parse.urlencode(params).encode()


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A message the fake accepted (answered 201)."""

    sid: str
    to: str
    body: str
    from_: str | None
    messaging_service_sid: str | None
    status_callback: str | None
    params: dict[str, str]
    at: float = field(default_factory=time.monotonic)  # when the fake accepted it
    content_sid: str | None = None  # a WhatsApp template send (Content API)
    content_variables: dict[str, str] = field(default_factory=dict)
    error_code: str | None = None  # accepted, but Twilio will report it failed with this code

    @property
    def whatsapp(self) -> bool:
        return self.to.startswith(WHATSAPP)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """Every request that reached the fake, whatever it was answered."""

    method: str
    path: str
    params: dict[str, str]
    authorized: bool
    status: int  # what the fake answered; 0 for a dropped connection
    at: float = 0.0  # time.monotonic() when it arrived


@dataclass(slots=True)
class Fault:
    status: int | None = None  # None: answer normally (after ``delay``)
    code: int | None = None
    message: str | None = None
    retry_after: float | str | None = None
    delay: float = 0.0
    drop: bool = False


@dataclass(slots=True)
class _State:
    messages: list[SentMessage] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    blocked: set[str] = field(default_factory=set)
    windows: dict[str, float] = field(default_factory=dict)  # WhatsApp number -> last inbound (epoch s)
    templates: dict[str, str] = field(default_factory=dict)  # approved ContentSid -> its text with {{n}}


class FakeTwilio:
    """Twilio's Messages API on 127.0.0.1:<free port>, recording what it receives."""

    def __init__(self, account_sid: str, auth_token: str) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._state = _State()
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0
        from tests.fakes.twilio_voice import PhoneCall, VoicePlatform

        self.voice = VoicePlatform(self)  # Calls.json legs (tests/fakes/twilio_voice.py)
        self.voice_queues: dict[str, list[PhoneCall]] = {}  # <Enqueue> queue name -> callers waiting

    # Lifecycle --------------------------------------------------------------------------
    async def start(self) -> FakeTwilio:
        app = web.Application()
        app.router.add_post(f"/{API_VERSION}/Accounts/{{sid}}/Messages.json", self._create)
        app.router.add_get(f"/{API_VERSION}/Accounts/{{sid}}/Messages.json", self._list)
        app.router.add_post(f"/{API_VERSION}/Accounts/{{sid}}/Calls.json", self._create_call)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTwilio:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """What TWILIO_API_BASE should be set to."""
        return f"http://127.0.0.1:{self.port}"

    # What it saw ------------------------------------------------------------------------
    @property
    def messages(self) -> list[SentMessage]:
        return list(self._state.messages)

    @property
    def requests(self) -> list[RecordedRequest]:
        return list(self._state.requests)

    async def wait_for(self, n: int, timeout: float = 5.0) -> list[SentMessage]:
        """The first ``n`` accepted messages, once there are that many (TimeoutError if not)."""
        await self._wait(lambda: len(self._state.messages) >= n, timeout, f"{n} messages")
        return self._state.messages[:n]

    async def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """The first ``n`` requests (accepted or not), once there are that many."""
        await self._wait(lambda: len(self._state.requests) >= n, timeout, f"{n} requests")
        return self._state.requests[:n]

    async def _wait(self, ready: Any, timeout: float, what: str) -> None:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(ready), timeout)
            except TimeoutError:
                raise TimeoutError(
                    f"fake Twilio: waited {timeout}s for {what}, got {len(self._state.messages)} messages "
                    f"in {len(self._state.requests)} requests"
                ) from None

    def reset(self) -> None:
        """Forget recorded traffic, pending faults and blocked numbers."""
        self._state = _State()

    # Fault injection ----------------------------------------------------------------------
    def inject(
        self,
        n: int = 1,
        *,
        status: int | None = None,
        code: int | None = None,
        message: str | None = None,
        retry_after: float | str | None = None,
        delay: float = 0.0,
        drop: bool = False,
    ) -> None:
        """The next ``n`` requests get this fault (queued after faults already injected)."""
        for _ in range(n):
            self._state.faults.append(Fault(status, code, message, retry_after, delay, drop))

    def block(self, number: str) -> None:
        """``number`` replied STOP at Twilio: every send to it fails with error 21610."""
        self._state.blocked.add(number)

    def unblock(self, number: str) -> None:
        self._state.blocked.discard(number)

    # WhatsApp ------------------------------------------------------------------------------
    def whatsapp_inbound(self, number: str, body: str, **kwargs: Any) -> dict[str, str]:
        """The webhook form of a WhatsApp message from ``number``, which opens its 24-hour window here."""
        self._state.windows[number.removeprefix(WHATSAPP)] = time.time()
        return whatsapp_params(number, body, **kwargs)

    def expire_window(self, number: str) -> None:
        """24 hours passed since ``number`` last wrote, as WhatsApp counts them."""
        self._state.windows.pop(number.removeprefix(WHATSAPP), None)

    def approve_template(self, content_sid: str, text: str) -> None:
        """A Content API template approved by WhatsApp: ``text`` with ``{{1}}``, ``{{2}}``... variables."""
        self._state.templates[content_sid] = text

    def _window_open(self, number: str) -> bool:
        opened = self._state.windows.get(number)
        return opened is not None and time.time() - opened < WINDOW_S

    # Status callbacks -------------------------------------------------------------------
    async def deliver_callbacks(
        self,
        url: str | None = None,
        auth_token: str | None = None,
        *,
        sid: str | None = None,
        statuses: Iterable[str] | None = None,
        error_code: str | None = None,
        sign_url: str | None = None,
    ) -> list[int]:
        """POST signed status callbacks for one sent message (``sid``, default the last one).

        ``statuses`` default: queued, sent, delivered; for a message Twilio accepted but fails
        (a WhatsApp free text outside the window), queued then failed with its error code.

        ``url``: where to POST (default: the message's StatusCallback). The signature is
        computed over ``sign_url`` (default: the StatusCallback, else ``url``), as Twilio
        signs the URL it was given even when a proxy forwards it elsewhere. Returns the
        HTTP status of each callback.
        """
        sent = self._find(sid)
        if statuses is None:
            statuses = ("queued", "failed") if sent.error_code else ("queued", "sent", "delivered")
        error_code = error_code or sent.error_code
        target = url or sent.status_callback
        if not target:
            raise ValueError("no callback URL: pass url= or send with a StatusCallback")
        query = urlsplit(sent.status_callback or "").query
        if url and query and "?" not in url:  # a proxy forwards the path and the query as they are
            target = f"{url}?{query}"
        signed_over = sign_url or sent.status_callback or target
        token = auth_token or self.auth_token
        codes: list[int] = []
        async with aiohttp.ClientSession() as session:
            for status in statuses:
                params = self.status_params(sent, status, error_code=error_code)
                headers = {
                    "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
                    "X-Twilio-Signature": sign(signed_over, token, params),
                    "User-Agent": "TwilioProxy/1.1",
                }
                async with session.post(target, data=urllib.parse.urlencode(params), headers=headers) as resp:
                    await resp.read()
                    codes.append(resp.status)
        return codes

    def status_params(self, sent: SentMessage, status: str, *, error_code: str | None = None) -> dict[str, str]:
        """The form of a status callback, as Twilio posts it."""
        params = {
            "SmsSid": sent.sid,
            "SmsStatus": status,
            "MessageStatus": status,
            "To": sent.to,
            "MessageSid": sent.sid,
            "AccountSid": self.account_sid,
            "From": sent.from_ or "+33700000000",
            "ApiVersion": API_VERSION,
        }
        if sent.messaging_service_sid:
            params["MessagingServiceSid"] = sent.messaging_service_sid
        if sent.whatsapp:
            params["ChannelPrefix"] = "whatsapp"
            params["ChannelToAddress"] = sent.to.removeprefix(WHATSAPP)
            params["ChannelInstallSid"] = "XE" + "0" * 32
            params["From"] = sent.from_ or WHATSAPP + "+33700000000"
        if status == "delivered" and not sent.whatsapp:
            params["RawDlrDoneDate"] = time.strftime("%y%m%d%H%M", time.gmtime())
        if error_code and status in ("failed", "undelivered"):
            params["ErrorCode"] = error_code
        return params

    def _find(self, sid: str | None) -> SentMessage:
        if not self._state.messages:
            raise LookupError("fake Twilio has sent no message")
        if sid is None:
            return self._state.messages[-1]
        for sent in self._state.messages:
            if sent.sid == sid:
                return sent
        raise LookupError(f"fake Twilio never sent {sid}")

    # The API ----------------------------------------------------------------------------
    async def _create(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        params = {k: str(v) for k, v in form.items()}
        authorized = self._authorized(request)
        fault = self._state.faults.pop(0) if self._state.faults else None
        if fault is not None and fault.delay:
            await asyncio.sleep(fault.delay)
        if fault is not None and fault.drop:
            await self._record(request, params, authorized, 0)
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError  # the handler ends without writing an answer
        if not authorized:
            return await self._error(request, params, False, 401, 20003)
        if request.match_info["sid"] != self.account_sid:
            return await self._error(request, params, True, 404, 20404)
        if fault is not None and fault.status is not None:
            return await self._error(
                request, params, True, fault.status, fault.code, fault.message, retry_after=fault.retry_after
            )
        to = params.get("To", "")
        body = params.get("Body", "")
        from_ = params.get("From") or None
        service = params.get("MessagingServiceSid") or None
        if not to:
            return await self._error(request, params, True, 400, 21604)
        if to.startswith(WHATSAPP):
            return await self._create_whatsapp(request, params)
        if not (to.startswith("+") and to[1:].isdigit() and 8 <= len(to) <= 16):
            return await self._error(
                request, params, True, 400, 21211, f"The 'To' number {to} is not a valid phone number."
            )
        if not body and "MediaUrl" not in params:
            return await self._error(request, params, True, 400, 21602)
        if not from_ and not service:
            return await self._error(request, params, True, 400, 21603)
        if len(body) > 1600:
            return await self._error(request, params, True, 400, 21617)
        if to in self._state.blocked:
            return await self._error(request, params, True, 400, 21610)
        sent = SentMessage(
            sid=new_sid("SM"),
            to=to,
            body=body,
            from_=from_,
            messaging_service_sid=service,
            status_callback=params.get("StatusCallback") or None,
            params=params,
        )
        self._state.messages.append(sent)
        await self._record(request, params, True, 201)
        return web.json_response(self._resource(sent), status=201)

    async def _create_whatsapp(self, request: web.Request, params: dict[str, str]) -> web.Response:
        """A WhatsApp send: free text (``Body``) or a template (``ContentSid`` + ``ContentVariables``)."""
        to = params["To"]
        number = to.removeprefix(WHATSAPP)
        from_ = params.get("From") or None
        service = params.get("MessagingServiceSid") or None
        if not (number.startswith("+") and number[1:].isdigit() and 8 <= len(number) <= 16):
            return await self._error(
                request, params, True, 400, 21211, f"The 'To' number {to} is not a valid phone number."
            )
        if from_ is not None and not from_.startswith(WHATSAPP):
            return await self._error(request, params, True, 400, 63007)
        if not from_ and not service:
            return await self._error(request, params, True, 400, 21603)
        content_sid = params.get("ContentSid") or None
        body = params.get("Body", "")
        variables: dict[str, str] = {}
        error_code = None
        if content_sid:
            template = self._state.templates.get(content_sid)
            if template is None:
                return await self._error(request, params, True, 400, 21655)
            try:
                raw = json.loads(params.get("ContentVariables") or "{}")
            except ValueError:
                return await self._error(request, params, True, 400, 21656)
            if not isinstance(raw, dict):
                return await self._error(request, params, True, 400, 21656)
            variables = {str(k): str(v) for k, v in raw.items()}
            body = template
            for name, value in variables.items():
                body = body.replace("{{" + name + "}}", value)
        elif not body and "MediaUrl" not in params:
            return await self._error(request, params, True, 400, 21619)
        elif not self._window_open(number):
            error_code = OUTSIDE_WINDOW  # accepted; the status callback reports the failure
        if len(body) > 1600:
            return await self._error(request, params, True, 400, 21617)
        sent = SentMessage(
            sid=new_sid("SM"),
            to=to,
            body=body,
            from_=from_,
            messaging_service_sid=service,
            status_callback=params.get("StatusCallback") or None,
            params=params,
            content_sid=content_sid,
            content_variables=variables,
            error_code=error_code,
        )
        self._state.messages.append(sent)
        await self._record(request, params, True, 201)
        return web.json_response(self._resource(sent), status=201)

    async def _create_call(self, request: web.Request) -> web.StreamResponse:
        """Calls.json: a call leg placed (Url or Twiml); the voice platform then rings it."""
        form = await request.post()
        params = {k: str(v) for k, v in form.items()}
        authorized = self._authorized(request)
        if not authorized:
            return await self._error(request, params, False, 401, 20003)
        if request.match_info["sid"] != self.account_sid:
            return await self._error(request, params, True, 404, 20404)
        leg = self.voice.create(params)
        if isinstance(leg, str):
            return await self._error(request, params, True, 400, int(leg))
        await self._record(request, params, True, 201)
        return web.json_response(self.voice.resource(leg), status=201)

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return secrets.compare_digest(user, self.account_sid) and secrets.compare_digest(password, self.auth_token)

    async def _record(self, request: web.Request, params: dict[str, str], authorized: bool, status: int) -> None:
        async with self._changed:
            self._state.requests.append(
                RecordedRequest(request.method, request.path, params, authorized, status, time.monotonic())
            )
            self._changed.notify_all()

    async def _error(
        self,
        request: web.Request,
        params: dict[str, str],
        authorized: bool,
        status: int,
        code: int | None,
        message: str | None = None,
        *,
        retry_after: float | str | None = None,
    ) -> web.Response:
        await self._record(request, params, authorized, status)
        code = code if code is not None else status
        payload = {
            "code": code,
            "message": message or ERROR_MESSAGES.get(code, "Error"),
            "more_info": f"{ERROR_DOCS}{code}",
            "status": status,
        }
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return web.json_response(payload, status=status, headers=headers)

    async def _list(self, request: web.Request) -> web.Response:
        """GET Messages.json: the account's messages, newest first, filtered by To and DateSent>."""
        if not self._authorized(request) or request.match_info["sid"] != self.account_sid:
            return web.json_response({"code": 20003, "message": "Authenticate", "status": 401}, status=401)
        to = request.query.get("To")
        rows = [m for m in reversed(self._state.messages) if to is None or m.to == to]
        page_size = int(request.query.get("PageSize", "50"))
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"
        return web.json_response(
            {
                "messages": [self._resource(m) for m in rows[:page_size]],
                "end": min(page_size, len(rows)) - 1,
                "first_page_uri": f"{uri}?PageSize={page_size}&Page=0",
                "next_page_uri": None,
                "page": 0,
                "page_size": page_size,
                "previous_page_uri": None,
                "start": 0,
                "uri": f"{uri}?PageSize={page_size}&Page=0",
            }
        )

    def _resource(self, sent: SentMessage) -> dict[str, Any]:
        now = formatdate(usegmt=True).replace("GMT", "+0000")
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sent.sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": sent.body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sent.from_,
            "messaging_service_sid": sent.messaging_service_sid,
            "num_media": "0",
            "num_segments": "1" if len(sent.body) <= 160 else str(-(-len(sent.body) // 153)),
            "price": None,
            "price_unit": "EUR",
            "sid": sent.sid,
            "status": "accepted" if sent.messaging_service_sid and not sent.from_ else "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": sent.to,
            "uri": f"{uri}.json",
        }
