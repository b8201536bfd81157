"""Sending one message (SMS or WhatsApp) through Twilio's Messages API without blocking the event loop.

Shared by ``channels/sms`` and ``channels/whatsapp``: both use one Twilio account.

The twilio library does the HTTP call through its aiohttp-based ``AsyncTwilioHttpClient``
(``messages.create_async``). In tests ``TWILIO_API_BASE`` points the API domain at a
loopback server. Failures become the gateway's ``SendError`` kinds (``to_send_error``);
nothing is retried here, the dispatcher does it with backoff.

The Messages API has no idempotency key: a send whose answer was lost (the process killed
mid-request) is settled by listing what Twilio accepted for that number (``find``), and sent
again only if Twilio has no such message.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import datetime as dt
import email.utils
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from gateway.envelope import (
    AmbiguousSend,
    ContactOptedOut,
    PermanentFailure,
    ProviderUnavailable,
    SendError,
    Throttled,
)

log = logging.getLogger(__name__)

UNSUBSCRIBED = 21610  # "Attempt to send to unsubscribed recipient"
OUTSIDE_WINDOW = 63016  # WhatsApp: free text outside the 24-hour customer-service window
OUTSIDE_WINDOW_REASON = (
    "hors de la fenêtre de 24 h de WhatsApp : seul un modèle approuvé peut partir (erreur Twilio 63016)"
)
MAX_RETRY_AFTER_S = 3600.0


@dataclass(slots=True)
class _LastResponse:
    status: int = 0
    retry_after: float | None = None


# Each send runs in its own task: the HTTP client notes the response headers it needs
# (Retry-After) in the holder of the current send, not on the shared client.
_CURRENT: contextvars.ContextVar[_LastResponse | None] = contextvars.ContextVar("twilio_last_response", default=None)


class _HttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """The library's async client, keeping Retry-After, which TwilioRestException drops.

    It also sends the credentials as an Authorization header itself: aiohttp 3.14
    deprecates the ``auth=BasicAuth(...)`` argument the library would pass.
    """

    async def request(self, *args: Any, **kwargs: Any) -> Any:
        auth = kwargs.pop("auth", None)
        if auth is not None:
            user, password = auth
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            kwargs["headers"] = {**(kwargs.get("headers") or {}), "Authorization": f"Basic {token}"}
        response = await super().request(*args, **kwargs)
        holder = _CURRENT.get()
        if holder is not None:
            holder.status = int(response.status_code)
            headers = response.headers or {}
            holder.retry_after = parse_retry_after(headers.get("Retry-After"))
        return response


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def to_send_error(exc: BaseException, retry_after: float | None = None) -> SendError:
    """What the dispatcher may do about a failed Messages API call."""
    # TwilioRestException (legacy JSON errors) and TwilioServiceException (RFC 9457) both
    # carry the HTTP status and Twilio's error code.
    if isinstance(exc, TwilioException) and hasattr(exc, "status"):
        status = int(getattr(exc, "status", 0) or 0)
        raw_code = getattr(exc, "code", None)
        code = str(raw_code) if raw_code is not None else None
        reason = f"Twilio {status}" + (f" (erreur {code})" if code and code != str(status) else "")
        if code == str(UNSUBSCRIBED):
            return ContactOptedOut("le destinataire a répondu STOP (erreur Twilio 21610)", code=code)
        if code == str(OUTSIDE_WINDOW):
            return PermanentFailure(OUTSIDE_WINDOW_REASON, code=code)
        if status == 429:
            return Throttled(f"{reason} : trop de requêtes", retry_after=retry_after, code=code)
        if status >= 500 or status == 0:
            return ProviderUnavailable(f"{reason} : service indisponible", code=code)
        if status == 401:
            # Our credentials were refused: an outage on our side, not a property of the
            # message; retried so that fixing TWILIO_AUTH_TOKEN saves the queued messages.
            return ProviderUnavailable(f"{reason} : identifiants Twilio refusés", code=code)
        return PermanentFailure(f"{reason} : message refusé", code=code)
    if isinstance(exc, TimeoutError):
        return AmbiguousSend("Twilio : délai dépassé (le message a pu partir)")
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return AmbiguousSend(f"Twilio : connexion coupée pendant la requête ({type(exc).__name__})")
    if isinstance(exc, aiohttp.ClientConnectorError):  # never connected: nothing was sent
        return ProviderUnavailable(f"Twilio injoignable ({type(exc).__name__})")
    if isinstance(exc, aiohttp.ClientError | OSError):
        return ProviderUnavailable(f"Twilio injoignable ({type(exc).__name__})")
    # A response the library could not read (not JSON, a proxy's HTML page...).
    return ProviderUnavailable(f"réponse illisible de Twilio ({type(exc).__name__})")


@dataclass(frozen=True, slots=True)
class Created:
    sid: str
    status: str  # Twilio's status at creation: queued, or accepted with a Messaging Service
    num_segments: str | None


class TwilioSender:
    """One Twilio REST client (and one aiohttp session) for all sends of a process."""

    def __init__(self, account_sid: str, auth_token: str, *, api_base: str = "", timeout_s: float = 10.0) -> None:
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._api_base = api_base.rstrip("/")
        self._timeout_s = timeout_s
        self._http: _HttpClient | None = None
        self._client: Any = None

    def _get_client(self) -> Any:
        """Created on first use, inside the running loop (aiohttp sessions must be)."""
        if self._client is None:
            # twilio dumps every request at INFO: keep that under the "twilio" logger (WARNING and up).
            self._http = _HttpClient(logger=logging.getLogger("twilio.http_client"))
            client = Client(self._account_sid, self._auth_token, http_client=self._http)
            if self._api_base:
                client.api.base_url = self._api_base
            self._client = client
        return self._client

    def rest(self) -> Any:
        """The twilio REST client (the Voice channel's ``calls.create_async``), on this sender's session."""
        return self._get_client()

    async def create(
        self,
        *,
        to: str,
        body: str,
        from_: str | None,
        messaging_service_sid: str | None,
        status_callback: str | None,
        content_sid: str | None = None,
        content_variables: str | None = None,
    ) -> Created:
        """Create (send) one message: ``body``, or a Content API template (``content_sid`` and its
        ``content_variables``, a JSON object). Raises a ``SendError``."""
        client = self._get_client()
        kwargs: dict[str, Any] = {"to": to}
        if content_sid:
            kwargs["content_sid"] = content_sid
            if content_variables:
                kwargs["content_variables"] = content_variables
        else:
            kwargs["body"] = body
        if messaging_service_sid:
            kwargs["messaging_service_sid"] = messaging_service_sid
        if from_:
            kwargs["from_"] = from_
        if status_callback:
            kwargs["status_callback"] = status_callback
        holder = _LastResponse()
        token = _CURRENT.set(holder)
        try:
            async with asyncio.timeout(self._timeout_s):
                message = await client.messages.create_async(**kwargs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise to_send_error(exc, holder.retry_after) from exc
        finally:
            _CURRENT.reset(token)
        sid = getattr(message, "sid", None)
        if not isinstance(sid, str) or not sid:
            raise ProviderUnavailable("réponse de Twilio sans identifiant de message")
        status = getattr(message, "status", None)
        segments = getattr(message, "num_segments", None)
        return Created(sid, str(status or "queued"), str(segments) if segments is not None else None)

    async def find(self, *, to: str, body: str, since: float, within: bool = False) -> list[str]:
        """The SIDs of messages to ``to`` with this body created since ``since`` (epoch s, a few seconds'
        leeway for clocks), newest first, as Twilio lists them. ``within``: the body only has to contain
        ``body`` (a template Twilio rendered around our text).

        Used to settle a send whose answer was lost: Twilio's API has no idempotency key, but it
        lists what it accepted. Raises a ``SendError`` if Twilio cannot be asked.
        """
        client = self._get_client()
        day = dt.datetime.fromtimestamp(since, dt.UTC) - dt.timedelta(days=1)
        try:
            async with asyncio.timeout(self._timeout_s):
                messages = await client.messages.list_async(to=to, date_sent_after=day, limit=50)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise to_send_error(exc) from exc
        found = []
        for message in messages:
            created = getattr(message, "date_created", None)
            found_body = getattr(message, "body", None)
            if not isinstance(found_body, str) or (body not in found_body if within else found_body != body):
                continue
            if isinstance(created, dt.datetime) and created.timestamp() < since - 5:
                continue
            sid = getattr(message, "sid", None)
            if isinstance(sid, str) and sid:
                found.append(sid)
        return found

    async def close(self) -> None:
        http, self._http, self._client = self._http, None, None
        if http is not None:
            await http.close()
