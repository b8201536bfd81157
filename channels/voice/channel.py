"""Phone calls through Twilio Programmable Voice: the member calls, the bot answers by voice, an agent
takes the call.

Routes (every one signed by Twilio, ``X-Twilio-Signature`` against ``PUBLIC_URL`` + path and query,
as SMS; a missing or wrong signature is a 403 and nothing happens):

* ``POST /voice/twilio/incoming``: a call to the mutuelle's number. Greeted in French, then a
  ``<Gather input="speech dtmf" language="fr-FR">``.
* ``POST /voice/twilio/gather?step=N``: what the caller said (``SpeechResult``) or typed (``Digits``)
  at turn N. It becomes an inbound message like a text message: accepted durably, de-duplicated on
  ``CallSid:N`` (a webhook Twilio sends again is the same turn), routed to the same bot. The reply is
  spoken before the next gather; if the bot has not answered within ``VOICE_REPLY_WAIT_S``, a
  holding phrase and a ``<Redirect>`` to ``/voice/twilio/reply?step=N`` fetch it: the turn is neither
  lost nor asked twice.
* ``POST /voice/twilio/reply?step=N``: the reply of turn N (after a redirect).
* ``POST /voice/twilio/wait?conv=…``: the ``waitUrl`` of ``<Enqueue>``: position and expected wait.
* ``POST /voice/twilio/queue?conv=…``: the ``<Enqueue>`` action: ``QueueResult`` (bridged, hangup…)
  and ``QueueTime``.
* ``POST /voice/twilio/bridge?conv=…``: the agent's phone answered (a call we placed with
  ``calls.create``): ``<Dial><Queue>`` bridges the waiting caller.
* ``POST /voice/twilio/status``: call status callbacks (the member's call, and the legs we placed,
  named by ``?leg=``).
* ``POST /voice/twilio/dialed?cb=…``: the ``<Dial>`` action of a callback: ``DialCallStatus`` of the
  member's phone (completed, no-answer, busy, failed), recorded without the agent clicking.

Identity: the caller's number is only an address. Caller ID can be spoofed; only a call Twilio
received with STIR/SHAKEN full attestation (``StirVerstat=TN-Validation-Passed-A``) is taken as
coming from that number (and so from the member whose registered phone it is: the bot then asks the
birth date). Any other call is an unknown caller (``sender_authentic=False``): never linked to a
member by its number, asked the member number and the one-time code sent by SMS to the registered
phone. The bot's lockout and audit are the same as on every channel.

Agents: when the bot hands the conversation to agents (« conseiller », a complaint, a failed
verification), the call is put in a Twilio queue named after the conversation, while the
conversation waits in the agents' skill queue like a chat. « Prendre l'appel » (``ring_agent``)
rings the agent's phone; its answer fetches ``/bridge``, which dials that queue. What the agents'
room does with call events (figures, an abandoned caller's SMS) is given by the composition root
(``events``); this channel knows nothing of it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import re
import time
from typing import Any, ClassVar, Protocol
from urllib.parse import urlencode

from aiohttp import web
from twilio.twiml.voice_response import VoiceResponse

from channels.base import ChannelBase, ChannelContext
from channels.twilio_api import TwilioSender, to_send_error
from channels.twilio_webhook import Params, SignatureCheck, e164, param
from channels.voice.speech import for_the_ear, keypad_text
from gateway import keys
from gateway.contacts import UNPROVEN
from gateway.envelope import BadRequest, Message, SendError, SendResult, inbound, now_ms
from gateway.hours import PARIS
from gateway.metrics import CALLS

log = logging.getLogger(__name__)

CHANNEL = "voice"
PREFIX = "/voice/twilio"
ATTESTED = "TN-Validation-Passed-A"
LANGUAGE = "fr-FR"
CALL_TTL_S = 24 * 3600
MAX_STEP = 500
MAX_SPEECH = 1000
MAX_SILENCES = 3
MAX_REDIRECTS = 4
REDIRECT_WAIT_S = 8.0  # a redirected webhook waits this long (Twilio gives each webhook 15 s)
_SID = re.compile(r"CA[0-9a-fA-F]{32}")
_CONV = re.compile(r"[0-9a-zA-Z._-]{1,80}")
_SPOKEN_DIGITS = re.compile(r"[0-9][0-9 .,-]*")
# What the bot adds when it hands a conversation to agents (agents/waiting.py): on the phone the queue's
# own message says the position and the wait, and after hours the caller is told of the callback instead.
_WAIT_NOTES = ("Temps d'attente estimé", "Aucun conseiller n'est disponible")

GREETING = (
    "Bonjour, vous êtes bien à votre mutuelle. Je suis l'assistant vocal : je peux vous dire où en sont vos "
    "remboursements, réclamations, devis, votre carte ou votre adhésion. Posez votre question après le bip, "
    "ou dites conseiller."
)
SILENCE = "Je ne vous ai pas entendu. Posez votre question, ou dites conseiller."
GOODBYE = "Je ne vous entends pas. Rappelez-nous quand vous voulez. Au revoir."
HOLDING = "Un instant, s'il vous plaît."
NO_REPLY = "Je n'ai pas de réponse pour le moment. Posez votre question autrement, ou dites conseiller."
ANYTHING_ELSE = "Puis-je faire autre chose pour vous ?"
WAITING = "Merci de patienter, un conseiller va vous répondre."
NOBODY = (
    "Nos conseillers ne peuvent pas vous répondre pour le moment. Vous pouvez demander à être rappelé sur "
    "notre site. Au revoir."
)
BRIDGE = "Appel d'un adhérent en attente. Mise en relation."
GONE = "L'adhérent a raccroché. Au revoir."
# Call statuses of Twilio that end a call.
ENDED = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})


class CallEvents(Protocol):
    """What the agents' room does with call events (``agents/calls.py``), given by ``server/product.py``."""

    async def waiting_text(self, conv_id: str) -> str: ...

    async def enqueued(self, conv_id: str, call_sid: str) -> None: ...

    async def left_queue(self, conv_id: str, call_sid: str, result: str, queue_time_s: int) -> None: ...

    async def call_ended(self, conv_id: str, call_sid: str, talk_s: int | None) -> None: ...

    async def leg_status(self, leg: dict[str, str], status: str) -> None: ...

    async def after_hours(self, conv_id: str, call_sid: str) -> str: ...


class VoiceChannel(ChannelBase):
    name: ClassVar[str] = CHANNEL

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        s = ctx.settings
        self.public_url = s.public_url.rstrip("/")
        self.signature = SignatureCheck(self.public_url, s.twilio_auth_token, CHANNEL)
        self.sender = TwilioSender(
            s.twilio_account_sid, s.twilio_auth_token, api_base=s.twilio_api_base,
            timeout_s=max(1.0, s.send_timeout_s * 0.9),
        )  # fmt: skip
        self.number = s.twilio_voice_number
        self.tts = s.voice_tts
        self.reply_wait_s = s.voice_reply_wait_s
        self.events: CallEvents | None = None  # the agents' room, set by the composition root

    # Routes ------------------------------------------------------------------------------
    def routes(self) -> web.RouteTableDef:
        routes = web.RouteTableDef()
        routes.post(f"{PREFIX}/incoming")(self.incoming)
        routes.post(f"{PREFIX}/gather")(self.gather)
        routes.post(f"{PREFIX}/reply")(self.reply)
        routes.post(f"{PREFIX}/wait")(self.wait)
        routes.post(f"{PREFIX}/queue")(self.queue_done)
        routes.post(f"{PREFIX}/bridge")(self.bridge)
        routes.post(f"{PREFIX}/status")(self.status)
        routes.post(f"{PREFIX}/dialed")(self.dialed)
        return routes

    async def stop(self) -> None:
        await self.sender.close()

    # Sending: what the bot or an agent says is spoken by the webhooks --------------------------
    async def send(self, msg: Message) -> SendResult:
        # The bot's reply is read from the conversation by the webhook that speaks it (``_answer``);
        # an agent's words on a call are said on the phone itself.
        return SendResult(status="delivered", meta={"via": "call"})

    # Webhooks ----------------------------------------------------------------------------
    async def incoming(self, request: web.Request) -> web.Response:
        params = await self.signature.verified_params(request)
        sid = call_sid(params)
        number = e164(param(params, "From"))
        attested = bool(number) and param(params, "StirVerstat") == ATTESTED
        urn = f"tel:{number}" if number else f"call:{sid}"
        key = keys.call(sid)
        await self.ctx.redis.hsetnx(key, "started_ms", str(now_ms()))
        await self.ctx.redis.hset(key, mapping={"urn": urn, "attested": "1" if attested else "0"})
        await self.ctx.redis.expire(key, CALL_TTL_S)
        CALLS.labels("received").inc()
        log.info("call received", extra={"channel": CHANNEL, "attested": attested, "call": sid[-6:]})
        return self._listen(1, [GREETING])

    async def gather(self, request: web.Request) -> web.Response:
        params = await self.signature.verified_params(request)
        sid = call_sid(params)
        step = step_of(request)
        call = await self._call(sid)
        speech = param(params, "SpeechResult")[:MAX_SPEECH]
        digits = param(params, "Digits")[:40]
        if speech and _SPOKEN_DIGITS.fullmatch(speech) and sum(c.isdigit() for c in speech) >= 6:
            speech = keypad_text(speech)  # « 1 2 3 4 5 6 », « 12 03 1975 » said digit by digit: as if typed
        text = speech or (keypad_text(digits) if digits else "")
        if not text:
            silences = int(await self.ctx.redis.hincrby(keys.call(sid), "silences", 1))
            if silences >= MAX_SILENCES:
                return self._goodbye(GOODBYE)
            return self._listen(step, [SILENCE])
        msg = inbound(
            CHANNEL,
            call["urn"],
            text,
            f"{sid}:{step}",
            meta={"call_sid": sid, "step": step, "input": "speech" if speech else "dtmf"},
            sender_authentic=None if call.get("attested") == "1" else False,
        )
        result = await self.ctx.accept(msg)
        if not result.duplicate:
            CALLS.labels("turn").inc()
        await self.ctx.redis.hsetnx(keys.call(sid), f"turn:{step}", result.msg_id)
        await self.ctx.redis.hset(keys.call(sid), "silences", "0")
        return await self._answer(sid, call, step, result.msg_id, redirects=0)

    async def reply(self, request: web.Request) -> web.Response:
        params = await self.signature.verified_params(request)
        sid = call_sid(params)
        step = step_of(request)
        call = await self._call(sid)
        msg_id = call.get(f"turn:{step}")
        if not msg_id:
            raise BadRequest("unknown turn")
        try:
            redirects = max(1, min(MAX_REDIRECTS, int(request.query.get("n", "1"))))
        except ValueError:
            redirects = 1
        return await self._answer(sid, call, step, msg_id, redirects=redirects)

    async def _answer(self, sid: str, call: dict[str, str], step: int, msg_id: str, *, redirects: int) -> web.Response:
        """The bot's reply to turn ``step``, spoken, then the next gather (or the agents' queue)."""
        deadline = time.monotonic() + (max(self.reply_wait_s, REDIRECT_WAIT_S) if redirects else self.reply_wait_s)
        conv = ""
        while True:
            conv = conv or await self._conversation_of(sid, call, msg_id)
            if conv and await self.ctx.redis.exists(keys.handled(conv, msg_id)):
                break
            if time.monotonic() >= deadline:
                if redirects >= MAX_REDIRECTS:
                    log.warning("no bot reply in time, turn given up", extra={"channel": CHANNEL, "step": step})
                    return self._listen(step + 1, [NO_REPLY])
                CALLS.labels("holding").inc()
                response = VoiceResponse()
                self._say(response, HOLDING)
                response.redirect(self._url("reply", step=step, n=redirects + 1), method="POST")
                return twiml(response)
            await asyncio.sleep(0.1)
        spoken = [for_the_ear(t, dt.datetime.now(PARIS).date()) for t in await self._replies(conv, msg_id)]
        status = await self.ctx.redis.hget(keys.conversation(conv), "status")
        if status == "handoff":
            return await self._to_agents(sid, conv, spoken)
        return self._listen(step + 1, spoken or [ANYTHING_ELSE])

    async def _to_agents(self, sid: str, conv: str, spoken: list[str]) -> web.Response:
        """The call joins the agents' queue (its conversation is already in the skill queue)."""
        response = VoiceResponse()
        spoken = [t for t in spoken if not t.startswith(_WAIT_NOTES)]
        closed = not self.ctx.settings.opening_hours.is_open(dt.datetime.now(PARIS))
        if closed and self.events is not None:
            for text in spoken:
                if not text.startswith("Je vous mets en relation"):  # nobody to put them through to now
                    self._say(response, text)
            self._say(response, await self.events.after_hours(conv, sid))
            response.hangup()
            return twiml(response)
        for text in spoken:
            self._say(response, text)
        first = await self.ctx.redis.hsetnx(keys.call(sid), "enqueued_ms", str(now_ms()))
        await self.ctx.redis.set(keys.conversation_call(conv), sid, ex=CALL_TTL_S)
        if first:
            CALLS.labels("queued").inc()
            if self.events is not None:
                await self.events.enqueued(conv, sid)
        response.enqueue(
            conv,
            action=self._url("queue", conv=conv),
            method="POST",
            wait_url=self._url("wait", conv=conv),
            wait_url_method="POST",
        )
        log.info("call queued for an agent", extra={"channel": CHANNEL, "conversation": conv})
        return twiml(response)

    async def wait(self, request: web.Request) -> web.Response:
        await self.signature.verified_params(request)
        conv = conv_of(request)
        text = await self.events.waiting_text(conv) if self.events is not None else WAITING
        response = VoiceResponse()
        self._say(response, text)
        response.pause(length=20)
        return twiml(response)

    async def queue_done(self, request: web.Request) -> web.Response:
        params = await self.signature.verified_params(request)
        sid, conv = call_sid(params), conv_of(request)
        result = param(params, "QueueResult").lower()[:40]
        raw_time = param(params, "QueueTime")
        queue_time = int(raw_time) if raw_time.isdigit() and len(raw_time) < 7 else 0
        # Once per call: a redelivered action is not a second outcome.
        if await self.ctx.redis.hsetnx(keys.call(sid), "queue_result", result):
            await self.ctx.redis.hset(keys.call(sid), "queue_time_s", str(queue_time))
            count_left_queue(result, queue_time)
            if self.events is not None:
                await self.events.left_queue(conv, sid, result, queue_time)
        response = VoiceResponse()
        if result not in ("bridged", "hangup"):
            self._say(response, NOBODY)
        response.hangup()
        return twiml(response)

    async def bridge(self, request: web.Request) -> web.Response:
        """The agent picked up their phone: bridge them to the waiting caller."""
        params = await self.signature.verified_params(request)
        conv = conv_of(request)
        leg_sid = call_sid(params)
        caller = await self.ctx.redis.get(keys.conversation_call(conv))
        response = VoiceResponse()
        state = await self.ctx.redis.hgetall(keys.call(caller)) if caller else {}
        if not caller or state.get("queue_result") or state.get("ended_ms"):
            self._say(response, GONE)
            response.hangup()
            return twiml(response)
        await self.ctx.redis.hsetnx(keys.call(caller), "bridged_ms", str(now_ms()))
        await self.ctx.redis.hset(keys.agent_leg(leg_sid), "answered_ms", str(now_ms()))
        self._say(response, BRIDGE)
        dial = response.dial(caller_id=self.number)
        dial.queue(conv)
        return twiml(response)

    async def status(self, request: web.Request) -> web.Response:
        params = await self.signature.verified_params(request)
        sid = call_sid(params)
        status = param(params, "CallStatus").lower()[:20]
        if request.query.get("leg"):
            leg = await self.ctx.redis.hgetall(keys.agent_leg(sid))
            if leg and self.events is not None and await self.ctx.redis.hsetnx(keys.agent_leg(sid), f"s:{status}", "1"):
                await self.events.leg_status(leg, status)
            return twiml(VoiceResponse())
        if status in ENDED:
            await self._ended(sid)
        return twiml(VoiceResponse())

    async def dialed(self, request: web.Request) -> web.Response:
        """The ``<Dial>`` of a callback ended: the member answered, or not (``DialCallStatus``)."""
        params = await self.signature.verified_params(request)
        sid = call_sid(params)
        status = param(params, "DialCallStatus").lower()[:20]
        leg = await self.ctx.redis.hgetall(keys.agent_leg(sid))
        if leg and status and self.events is not None:
            if await self.ctx.redis.hsetnx(keys.agent_leg(sid), "member_status", status):
                await self.events.leg_status({**leg, "dialed": "1"}, status)
        response = VoiceResponse()
        response.hangup()
        return twiml(response)

    async def _ended(self, sid: str) -> None:
        key = keys.call(sid)
        if not await self.ctx.redis.hsetnx(key, "ended_ms", str(now_ms())):
            return  # a callback sent again
        call = await self.ctx.redis.hgetall(key)
        conv = call.get("conv", "")
        talk_s = None
        if call.get("bridged_ms", "").isdigit():
            talk_s = max(0, (now_ms() - int(call["bridged_ms"])) // 1000)
        if conv:
            # The member's next call is a new conversation (its verification included).
            contact = await self.ctx.redis.hget(keys.conversation(conv), "contact_id")
            if contact:
                pointer = keys.open_conversation(contact, CHANNEL)
                if await self.ctx.redis.get(pointer) == conv:
                    await self.ctx.redis.delete(pointer)
            await self.ctx.redis.hset(keys.conversation(conv), "call_ended_ms", str(now_ms()))
            if call.get("enqueued_ms") and not call.get("queue_result"):
                # Hung up in the queue before Twilio's action told us: abandoned all the same.
                if await self.ctx.redis.hsetnx(key, "queue_result", "hangup"):
                    waited = (now_ms() - int(call["enqueued_ms"])) // 1000
                    count_left_queue("hangup", waited)
                    if self.events is not None:
                        await self.events.left_queue(conv, sid, "hangup", waited)
            if self.events is not None:
                await self.events.call_ended(conv, sid, talk_s)
        CALLS.labels("ended").inc()
        log.info("call ended", extra={"channel": CHANNEL, "call": sid[-6:], "talk_s": talk_s})

    # Calls we place ------------------------------------------------------------------------
    async def ring_agent(self, conv_id: str, login: str, phone: str) -> str:
        """Ring the agent's phone; when they answer, ``/bridge`` dials the caller's queue. Returns the
        leg's CallSid; raises ``SendError`` when Twilio refuses."""
        sid = await self._create_call(
            to=phone, url=self._url("bridge", conv=conv_id), leg={"kind": "agent", "conv": conv_id, "agent": login}
        )
        return sid

    async def call_member(self, callback_id: str, login: str, agent_phone: str, member_phone: str) -> str:
        """A callback: ring the agent, then dial the member with the mutuelle's number as caller ID."""
        response = VoiceResponse()
        self._say(response, "Rappel d'un adhérent : appel en cours.")
        dial = response.dial(
            caller_id=self.number,
            action=self._url("dialed", cb=callback_id),
            method="POST",
            timeout=30,
        )
        dial.number(member_phone)
        return await self._create_call(
            to=agent_phone, twiml_text=str(response.to_xml()),
            leg={"kind": "callback", "callback": callback_id, "agent": login},
        )  # fmt: skip

    async def _create_call(
        self, *, to: str, leg: dict[str, str], url: str | None = None, twiml_text: str | None = None
    ) -> str:
        client = self.sender.rest()
        kwargs: dict[str, Any] = {
            "to": to,
            "from_": self.number,
            "status_callback": self._url("status", leg=leg["kind"]),
            "status_callback_event": ["initiated", "ringing", "answered", "completed"],
            "status_callback_method": "POST",
            "timeout": 30,
        }
        if url:
            kwargs.update(url=url, method="POST")
        else:
            kwargs["twiml"] = twiml_text
        try:
            async with asyncio.timeout(10):
                created = await client.calls.create_async(**kwargs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise to_send_error(exc) from exc
        sid = str(getattr(created, "sid", "") or "")
        if not sid:
            raise SendError("réponse de Twilio sans identifiant d'appel")
        await self.ctx.redis.hset(keys.agent_leg(sid), mapping={**leg, "sid": sid, "created_ms": str(now_ms())})
        await self.ctx.redis.expire(keys.agent_leg(sid), CALL_TTL_S)
        return sid

    # Helpers -----------------------------------------------------------------------------
    async def _call(self, sid: str) -> dict[str, str]:
        call: dict[str, str] = await self.ctx.redis.hgetall(keys.call(sid))
        if not call.get("urn"):
            raise BadRequest("unknown call")
        return call

    async def _conversation_of(self, sid: str, call: dict[str, str], msg_id: str) -> str:
        """The call's conversation, once the router has filed the turn's message in it."""
        candidates = [call["conv"]] if call.get("conv") else []
        urn = call["urn"] if call.get("attested") == "1" else UNPROVEN + call["urn"]
        contact = await self.ctx.redis.get(keys.address(urn))
        if contact:
            candidates.append(str(await self.ctx.redis.get(keys.open_conversation(contact, CHANNEL)) or ""))
            # A turn the router sent elsewhere (the survey of a conversation just closed): its replies are there.
            candidates += await self.ctx.redis.zrevrange(keys.contact_conversations(contact), 0, 4)
        for conv in dict.fromkeys(c for c in candidates if c):
            if await self.ctx.redis.zscore(keys.conversation_log(conv), msg_id) is None:
                continue
            if not call.get("conv") and await self.ctx.redis.hget(keys.conversation(conv), "channel") == CHANNEL:
                await self.ctx.redis.hset(keys.call(sid), "conv", conv)
                await self.ctx.redis.hset(keys.conversation(conv), "call_sid", sid)
                call["conv"] = conv
            return conv
        return ""

    async def _replies(self, conv: str, msg_id: str) -> list[str]:
        """The texts the router queued on this channel in reply to ``msg_id`` (a code sent by SMS is not one)."""
        texts: list[str] = []
        n = 1
        while n < 50:
            raw = await self.ctx.redis.hget(keys.message(conv, f"{msg_id}.r{n}"), "m")
            if raw is None:
                break
            data = json.loads(raw)
            if data.get("channel") == CHANNEL and str(data.get("text") or "").strip():
                texts.append(str(data["text"]))
            n += 1
        return texts

    def _url(self, route: str, **query: object) -> str:
        return f"{self.public_url}{PREFIX}/{route}?{urlencode({k: str(v) for k, v in query.items()})}"

    def _say(self, response: Any, text: str) -> None:
        response.say(text, language=LANGUAGE, voice=self.tts)

    def _listen(self, step: int, texts: list[str]) -> web.Response:
        response = VoiceResponse()
        gather = response.gather(
            input="speech dtmf",
            language=LANGUAGE,
            action=self._url("gather", step=step),
            method="POST",
            speech_timeout="auto",
            timeout=6,
            finish_on_key="#",
            action_on_empty_result=True,
        )
        for text in texts:
            self._say(gather, text)
        return twiml(response)

    def _goodbye(self, text: str) -> web.Response:
        response = VoiceResponse()
        self._say(response, text)
        response.hangup()
        return twiml(response)


def count_left_queue(result: str, queue_time_s: int) -> None:
    if result == "bridged":
        CALLS.labels("answered").inc()
        if queue_time_s <= 60:
            CALLS.labels("answered_60").inc()
    else:
        CALLS.labels("abandoned" if result == "hangup" else "unanswered").inc()


def twiml(response: VoiceResponse) -> web.Response:
    return web.Response(text=str(response.to_xml()), content_type="text/xml", charset="utf-8")


def call_sid(params: Params) -> str:
    sid = param(params, "CallSid")
    if not _SID.fullmatch(sid):
        raise BadRequest("missing or malformed CallSid")
    return sid


def step_of(request: web.Request) -> int:
    raw = request.query.get("step", "")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_STEP:
        raise BadRequest("bad step")
    return int(raw)


def conv_of(request: web.Request) -> str:
    conv = request.query.get("conv", "")
    if not _CONV.fullmatch(conv):
        raise BadRequest("bad conversation")
    return conv
