"""The loopback Twilio's voice side: phone calls as Twilio's voice platform runs them.

* ``PhoneCall``: a member's call to the product. It posts the signed webhooks Twilio posts (the
  incoming call with ``StirVerstat``, ``SpeechResult``/``Digits`` to the ``<Gather>`` action, the
  ``<Redirect>`` it is told to follow, the ``<Enqueue>`` ``waitUrl`` and action with ``QueueResult`` and
  ``QueueTime``, the call's status callbacks), keeps every TwiML document it was answered and what
  was said to the caller::

      call = PhoneCall(fake, product.url, "+33199001234", stir="TN-Validation-Passed-A")
      await call.start()                 # greeting; now listening
      await call.speak("où en est mon remboursement")
      await call.press("12031975")
      assert "18 euros 80" in call.said[-1]
      await call.hang_up()

* ``Calls.json``: ``POST /2010-04-01/Accounts/{sid}/Calls.json`` with ``Url`` or ``Twiml`` creates a
  call leg; the platform then rings it (status callbacks ``initiated``, ``ringing``, then
  ``in-progress``/``completed``, or ``no-answer``/``busy``, as set per number with ``phone``), fetches
  its TwiML when answered, and runs ``<Dial><Queue>`` (bridges the waiting ``PhoneCall``) or
  ``<Dial><Number>`` (rings the member, the ``<Dial>`` action gets ``DialCallStatus``).

Every request is signed like Twilio signs: ``X-Twilio-Signature`` over the full URL and the form.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

if TYPE_CHECKING:
    from tests.fakes.twilio import FakeTwilio

API_VERSION = "2010-04-01"
ATTESTED = "TN-Validation-Passed-A"


def new_call_sid() -> str:
    return "CA" + secrets.token_hex(16)


async def post_signed(fake: FakeTwilio, url: str, params: dict[str, str]) -> tuple[int, str]:
    from tests.fakes.twilio import sign

    headers = {
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
        "X-Twilio-Signature": sign(url, fake.auth_token, params),
        "User-Agent": "TwilioProxy/1.1",
        "I-Twilio-Idempotency-Token": secrets.token_hex(16),
    }
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=urllib.parse.urlencode(params), headers=headers) as resp:
            return resp.status, await resp.text()


def says(document: str) -> list[str]:
    """The texts a TwiML document speaks, in order."""
    return [el.text or "" for el in ET.fromstring(document).iter("Say")]


@dataclass(slots=True)
class Leg:
    """A call we were asked to place (``Calls.json``)."""

    sid: str
    to: str
    from_: str
    url: str | None
    twiml: str | None
    status_callback: str | None
    params: dict[str, str]
    statuses: list[str] = field(default_factory=list)
    documents: list[str] = field(default_factory=list)
    dialed: list[tuple[str, str]] = field(default_factory=list)  # (number dialled, DialCallStatus)
    bridged: PhoneCall | None = None


class PhoneCall:
    """A member's call to ``product_url``'s voice webhooks, through the loopback Twilio."""

    def __init__(
        self,
        fake: FakeTwilio,
        product_url: str,
        from_: str,
        *,
        to: str = "+33100000000",
        stir: str | None = ATTESTED,
        status_path: str = "/voice/twilio/status",
    ) -> None:
        self.fake = fake
        self.base = product_url.rstrip("/")
        self.from_ = from_
        self.to = to
        self.stir = stir
        self.sid = new_call_sid()
        self.status_url = self.base + status_path
        self.documents: list[str] = []  # every TwiML answer, in order
        self.said: list[str] = []  # what the caller heard, one entry per document
        self.answers: list[int] = []  # HTTP status of every webhook
        self.gather_action: str | None = None
        self.queue: str | None = None  # the <Enqueue> queue name
        self.queue_action: str | None = None
        self.wait_url: str | None = None
        self.enqueued_at: float | None = None
        self.bridged_at: float | None = None
        self.ended = False

    def params(self, **extra: str) -> dict[str, str]:
        params = {
            "AccountSid": self.fake.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": self.sid,
            "CallStatus": "in-progress",
            "Called": self.to,
            "Caller": self.from_,
            "Direction": "inbound",
            "From": self.from_,
            "FromCountry": "FR",
            "To": self.to,
            "ToCountry": "FR",
        }
        if self.stir is not None:
            params["StirVerstat"] = self.stir
        params.update(extra)
        return params

    async def post(self, url: str, **extra: str) -> str:
        status, body = await post_signed(self.fake, url, self.params(**extra))
        self.answers.append(status)
        if status != 200:
            raise AssertionError(f"{url} answered {status}: {body[:300]}")
        return body

    async def start(self) -> str:
        """The call rings at the product: its greeting."""
        return await self.follow(await self.post(self.base + "/voice/twilio/incoming", CallStatus="ringing"))

    async def speak(self, text: str, confidence: str = "0.92") -> str:
        """Say ``text`` to the current <Gather>; returns all that was said back (redirects followed)."""
        assert self.gather_action, "not listening"
        return await self.follow(await self.post(self.gather_action, SpeechResult=text, Confidence=confidence))

    async def press(self, digits: str) -> str:
        assert self.gather_action, "not listening"
        return await self.follow(await self.post(self.gather_action, Digits=digits, FinishedOnKey="#"))

    async def silence(self) -> str:
        assert self.gather_action, "not listening"
        return await self.follow(await self.post(self.gather_action))

    async def follow(self, document: str) -> str:
        """Run a TwiML document as Twilio would: Say, Gather (listen), Redirect, Enqueue, Hangup."""
        heard: list[str] = []
        while True:
            self.documents.append(document)
            root = ET.fromstring(document)
            heard += says(document)
            self.gather_action = None
            redirect = None
            for verb in root:
                if verb.tag == "Gather":
                    self.gather_action = verb.get("action")
                elif verb.tag == "Redirect":
                    redirect = (verb.text or "").strip()
                elif verb.tag == "Enqueue":
                    self.queue = (verb.text or "").strip()
                    self.queue_action = verb.get("action")
                    self.wait_url = verb.get("waitUrl")
                    self.enqueued_at = time.monotonic()
                    self.fake.voice_queues.setdefault(self.queue, []).append(self)
                    if self.wait_url:  # the waiting message, as Twilio plays it at once
                        waiting = await self.post(self.wait_url, QueuePosition="1", QueueTime="0",
                                                  CurrentQueueSize="1", QueueSid="QU" + "0" * 32)  # fmt: skip
                        self.documents.append(waiting)
                        heard += says(waiting)
                elif verb.tag == "Hangup":
                    self.ended = True
            if redirect is None:
                break
            document = await self.post(redirect)
        self.said.append(" ".join(heard))
        return self.said[-1]

    async def hang_up(self, duration: int | None = None) -> None:
        """The caller hangs up: in the queue, the <Enqueue> action says so; then the call's status."""
        if self.queue is not None and self.queue_action and self in self.fake.voice_queues.get(self.queue, []):
            self.fake.voice_queues[self.queue].remove(self)
            waited = int(time.monotonic() - (self.enqueued_at or time.monotonic()))
            await self.post(self.queue_action, QueueResult="hangup", QueueTime=str(waited),
                            QueueSid="QU" + "0" * 32)  # fmt: skip
        await self.completed(duration)

    async def completed(self, duration: int | None = None) -> None:
        self.ended = True
        await self.post(self.status_url, CallStatus="completed", CallDuration=str(duration or 30))

    async def end_bridge(self) -> None:
        """The agent and the member hang up after talking: the Enqueue action (bridged), then statuses."""
        assert self.bridged_at is not None and self.queue_action, "not bridged"
        waited = int(self.bridged_at - (self.enqueued_at or self.bridged_at))
        await self.post(self.queue_action, QueueResult="bridged", QueueTime=str(waited), QueueSid="QU" + "0" * 32)
        await self.completed()


class VoicePlatform:
    """What the fake does with a call leg created through ``Calls.json``."""

    def __init__(self, fake: FakeTwilio) -> None:
        self.fake = fake
        self.legs: list[Leg] = []
        self.behaviour: dict[str, str] = {}  # number -> "answer" (default), "no-answer", "busy"
        self.tasks: list[asyncio.Task[None]] = []

    def create(self, params: dict[str, str]) -> Leg | str:
        """A Calls.json create: the leg, or the reason it is refused."""
        to, from_ = params.get("To", ""), params.get("From", "")
        if not (to.startswith("+") and to[1:].isdigit()):
            return "21211"
        if not from_:
            return "21603"
        if not params.get("Url") and not params.get("Twiml"):
            return "21205"
        leg = Leg(
            sid=new_call_sid(), to=to, from_=from_, url=params.get("Url"), twiml=params.get("Twiml"),
            status_callback=params.get("StatusCallback"), params=params,
        )  # fmt: skip
        self.legs.append(leg)
        self.tasks.append(asyncio.create_task(self._ring(leg)))
        return leg

    async def _status(self, leg: Leg, status: str, **extra: str) -> None:
        leg.statuses.append(status)
        if leg.status_callback:
            params = self._params(leg, CallStatus=status, **extra)
            await post_signed(self.fake, leg.status_callback, params)

    def _params(self, leg: Leg, **extra: str) -> dict[str, str]:
        return {
            "AccountSid": self.fake.account_sid, "ApiVersion": API_VERSION, "CallSid": leg.sid,
            "Direction": "outbound-api", "From": leg.from_, "To": leg.to, "Called": leg.to, "Caller": leg.from_,
            **extra,
        }  # fmt: skip

    async def _ring(self, leg: Leg) -> None:
        await self._status(leg, "initiated")
        await self._status(leg, "ringing")
        behaviour = self.behaviour.get(leg.to, "answer")
        if behaviour != "answer":
            await self._status(leg, behaviour)
            return
        await self._status(leg, "in-progress")
        if leg.url:
            status, document = await post_signed(self.fake, leg.url, self._params(leg, CallStatus="in-progress"))
            if status != 200:
                await self._status(leg, "failed")
                return
        else:
            document = leg.twiml or "<Response/>"
        leg.documents.append(document)
        root = ET.fromstring(document)
        for dial in root.iter("Dial"):
            for queue in dial.iter("Queue"):
                waiting = self.fake.voice_queues.get((queue.text or "").strip(), [])
                if waiting:
                    caller = waiting.pop(0)
                    caller.bridged_at = time.monotonic()
                    leg.bridged = caller
                    return  # the bridge lasts until the test ends it (PhoneCall.end_bridge)
            for number in dial.iter("Number"):
                dialled = (number.text or "").strip()
                outcome = self.behaviour.get(dialled, "answer")
                dial_status = "completed" if outcome == "answer" else outcome
                leg.dialed.append((dialled, dial_status))
                action = dial.get("action")
                if action:
                    await post_signed(self.fake, action, self._params(leg, CallStatus="in-progress",
                                                                      DialCallStatus=dial_status))  # fmt: skip
        await self._status(leg, "completed", CallDuration="12")

    async def end_leg(self, leg: Leg) -> None:
        await self._status(leg, "completed", CallDuration="42")

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait for every leg's ringing to have run its course."""
        if self.tasks:
            await asyncio.wait_for(asyncio.gather(*self.tasks), timeout)

    def resource(self, leg: Leg) -> dict[str, Any]:
        uri = f"/{API_VERSION}/Accounts/{self.fake.account_sid}/Calls/{leg.sid}"
        return {
            "account_sid": self.fake.account_sid, "api_version": API_VERSION, "sid": leg.sid, "to": leg.to,
            "from": leg.from_, "status": "queued", "direction": "outbound-api", "uri": f"{uri}.json",
            "date_created": None, "date_updated": None, "start_time": None, "end_time": None, "duration": None,
            "parent_call_sid": None, "price": None, "price_unit": "EUR", "answered_by": None,
            "caller_name": None, "forwarded_from": None, "group_sid": None, "phone_number_sid": None,
            "queue_time": "0", "trunk_sid": None, "subresource_uris": {},
        }  # fmt: skip
