"""One-time codes for the member a conversation claims to be: drawn, limited, sent to the registered
address, and what the person who asked is told.

The bot's actions never send anything themselves: when a member must prove who they are with a
one-time code, the bot's answer carries ``{"otp": {"member": ..., "action": ...}}`` and the gateway's
Rasa responder asks ``OneTimeCodes.handle`` (``gateway.rasa.CodeRequest``). The answer is what the
person who asked is told (in the conversation, where the bot's request was) and the messages that go
elsewhere: the code to the member's registered phone (SMS) or e-mail, whichever channel is enabled,
never to the address the conversation came from, and the notice that someone asked too many codes.

Nothing the person who asked sees depends on whether the member number exists or has a phone or an
e-mail: every step (limits, counters, the code drawn and its digest kept) is the same for a number
nobody holds, only no message leaves. Limits (README, "Threat model"), all per member number whoever
asks, in every conversation and channel together:

* codes sent: a burst of ``burst``, then ``per_hour`` an hour (GCRA), and at most ``per_day`` a day;
* wrong codes tried: at most ``failures_per_day`` a day (counted by the bot, ``bot/actions/state.py``);
* per source address (the web-chat client's address, else the sender's): ``source_burst``, then
  ``source_per_hour`` an hour;
* all members together: ``per_minute`` codes a minute (the SMS budget).

Once a member's day is spent the member is told so, once, at the registered address.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from redis.asyncio import Redis

from gateway import keys
from gateway.rasa import CodeOutcome, CodeRequest
from gateway.ratelimit import RateLimiter
from gateway.redis_client import replace_hash
from gateway.responders import Reply
from members.otp import new_code, otp_digest, otp_key, typed_digests
from members.records import Member, MemberStore

log = logging.getLogger(__name__)

PARIS = ZoneInfo("Europe/Paris")
OTP_TTL_S = 600
KEEP_EXPIRED_S = 3600  # an expired code's digest stays this long, so that it is said to be expired
RESEND_AFTER_S = 5 * 60  # « renvoyez le code » before this: told when it went, nothing sent
DAY_TTL_S = 2 * 24 * 3600

CODE_TEXT = (
    "{mutuelle} : votre code de vérification est {code}. Valable 10 minutes. Ne le communiquez à personne. "
    "Ne répondez pas à ce message."
)
CODE_SUBJECT = "{mutuelle} : votre code de vérification"
ALERT_TEXT = (
    "{mutuelle} : Quelqu'un a demandé plusieurs codes pour votre dossier aujourd'hui. Aucune information de "
    "votre dossier n'a été donnée. Par sécurité, plus aucun code ne sera envoyé avant demain : écrivez-nous "
    "depuis ce numéro ou cette adresse, ou appelez-nous. Si ce n'est pas vous, ne communiquez aucun code. "
    "Ne répondez pas à ce message."
)
ALERT_SUBJECT = "{mutuelle} : codes de vérification demandés pour votre dossier"
SENT_TEXT = (
    "Si ce numéro correspond à un dossier, un code à 6 chiffres vient d'être envoyé au téléphone ou à "
    "l'adresse e-mail qui y sont enregistrés (valable 10 minutes). Si ni téléphone ni e-mail n'y figurent, "
    "aucun code ne peut partir : appelez-nous ou demandez à être rappelé{where}."
)
# To a sender whose address is the member's (asked a code instead of the birth date): the member is known.
SENT_KNOWN_TEXT = {
    "sms": "D'accord : un code à 6 chiffres vient d'être envoyé par SMS au téléphone enregistré dans votre dossier "
    "(valable 10 minutes).",
    "email": "D'accord : un code à 6 chiffres vient d'être envoyé à l'adresse e-mail enregistrée dans votre dossier "
    "(valable 10 minutes).",
}
ALREADY_TEXT = (
    "Un code a déjà été envoyé il y a {ago} au téléphone ou à l'adresse e-mail enregistrés dans ce dossier ; "
    "vérifiez vos SMS et vos e-mails (l'envoi peut prendre quelques minutes). Vous pourrez en demander un "
    "nouveau dans {wait}."
)
SPENT_TEXT = (
    "Trop de codes ont été demandés aujourd'hui pour ce numéro d'adhérent : par sécurité, aucun autre ne "
    "sera envoyé avant demain. Pour vous identifier, écrivez-nous depuis le téléphone ou l'adresse e-mail "
    "enregistrés dans votre dossier, appelez-nous ou demandez à être rappelé{where}."
)
WAIT_TEXT = (
    "Un code a déjà été demandé il y a peu pour ce numéro ou depuis votre connexion : réessayez dans {wait}, "
    "ou demandez à être rappelé{where}."
)
BUSY_TEXT = "Trop de codes sont demandés en ce moment : réessayez dans une minute."


def minutes(seconds: float) -> str:
    n = max(1, math.ceil(seconds / 60))
    return f"{n} minute{'s' if n > 1 else ''}"


def ago(seconds: float) -> str:
    n = int(seconds // 60)
    return "moins d'une minute" if n < 1 else f"{n} minute{'s' if n > 1 else ''}"


@dataclass(frozen=True, slots=True)
class CodeLimits:
    per_hour: float = 2.0
    burst: int = 3
    per_day: int = 8
    failures_per_day: int = 10
    source_per_hour: float = 6.0
    source_burst: int = 3
    per_minute: int = 60
    handoff_every_s: int = 3600


def today_paris() -> str:
    return dt.datetime.now(PARIS).date().isoformat()


class OneTimeCodes:
    def __init__(
        self,
        redis: Redis,
        *,
        secret: str,
        channels: tuple[str, ...] = ("sms", "email"),
        limits: CodeLimits | None = None,
        mutuelle: str = "Ma Mutuelle",
        callback_url: str = "",
    ) -> None:
        self.redis = redis
        self.key = otp_key(secret)
        self.channels = channels  # the enabled ones a code may go by, in order of preference
        self.limits = limits or CodeLimits()
        self.mutuelle = mutuelle
        self.where = f" : {callback_url}" if callback_url else ""
        self.limiter = RateLimiter(redis)

    # What the bot is given with each message -------------------------------------------------
    def metadata(self, conv_id: str, text: str) -> dict[str, object]:
        """The digests of the codes the message may hold (the bot compares them with the stored one;
        the key stays here) and the day's budget of wrong codes per member."""
        return {"digests": typed_digests(self.key, conv_id, text), "failures_per_day": self.limits.failures_per_day,
                "handoff_every_s": self.limits.handoff_every_s}  # fmt: skip

    def digest(self, conv_id: str, code: str) -> str:
        return otp_digest(self.key, conv_id, code)

    # The bot's requests ------------------------------------------------------------------------
    async def handle(self, request: CodeRequest) -> CodeOutcome:
        if request.action == "alert":  # the bot counted the day's last wrong code for this member
            alert = await self._alert(request.member, keys.member_otp_day(request.member, today_paris()))
            return CodeOutcome([], [alert] if alert else [])
        return await self.request(request.conversation, request.member, source=request.source,
                                  resend=request.action == "resend", known=request.action == "send_known")  # fmt: skip

    async def request(
        self, conv_id: str, member_id: str, *, source: str = "", resend: bool = False, known: bool = False
    ) -> CodeOutcome:
        """A code for ``member_id`` asked in ``conv_id``: sent (or not) and what the asker is told."""
        now = time.time()
        key = keys.conversation_otp(conv_id)
        current = await self.redis.hgetall(key)
        if resend and current.get("member") == member_id and current.get("digest"):
            sent_s = int(current.get("sent_ms") or 0) / 1000
            expires_s = int(current.get("expires_ms") or 0) / 1000
            if now < expires_s and now - sent_s < RESEND_AFTER_S:
                wait = RESEND_AFTER_S - (now - sent_s)
                return CodeOutcome([ALREADY_TEXT.format(ago=ago(now - sent_s), wait=minutes(wait))], [])
        day_key = keys.member_otp_day(member_id, today_paris())
        sent, failed = (int(v or 0) for v in await self.redis.hmget(day_key, ["sent", "failed"]))
        lim = self.limits
        if sent >= lim.per_day or failed >= lim.failures_per_day:
            alert = await self._alert(member_id, day_key)
            log.warning("one-time code refused: the member's day is spent", extra={"conversation": conv_id})
            return CodeOutcome([SPENT_TEXT.format(where=self.where)], [alert] if alert else [])
        buckets = ((f"otp-src:{source or conv_id}", lim.source_per_hour / 3600, lim.source_burst),
                   (f"otp:{member_id}", lim.per_hour / 3600, lim.burst))  # fmt: skip
        for bucket, rate, burst in buckets:
            wait = await self.limiter.acquire(bucket, rate, burst)
            if wait > 0:
                log.warning("one-time code withheld: asked too often", extra={"conversation": conv_id})
                return CodeOutcome([WAIT_TEXT.format(wait=minutes(wait), where=self.where)], [])
        if await self.limiter.acquire("otp:all", lim.per_minute / 60, lim.per_minute) > 0:
            log.warning("one-time code withheld: the per-minute cap is reached", extra={"conversation": conv_id})
            return CodeOutcome([BUSY_TEXT], [])
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(day_key, "sent", 1)
            pipe.expire(day_key, DAY_TTL_S)
            await pipe.execute()
        # The same work whether or not the number is a member's: a code drawn and its digest kept.
        member = await MemberStore(self.redis).get(member_id)
        code = new_code()
        now_ms = int(now * 1000)
        await replace_hash(
            self.redis,
            key,
            {"member": member_id, "digest": self.digest(conv_id, code), "sent_ms": now_ms,
             "expires_ms": now_ms + OTP_TTL_S * 1000},
            ttl_s=OTP_TTL_S + KEEP_EXPIRED_S,
        )  # fmt: skip
        address = self._address(member)
        say = [SENT_TEXT.format(where=self.where)]
        if address is None:
            if member is not None:
                log.warning("no channel to send a one-time code", extra={"conversation": conv_id})
            return CodeOutcome(say, [])
        channel, urn = address
        if known:  # the sender writes from the member's address: where the code went may be said
            say = [SENT_KNOWN_TEXT.get(channel, say[0])]
        meta = {"thread": {"subject": CODE_SUBJECT.format(mutuelle=self.mutuelle)}, "otp": True}
        text = CODE_TEXT.format(mutuelle=self.mutuelle, code=code)
        return CodeOutcome(say, [Reply(text, channel=channel, urn=urn, meta=meta)])

    async def send(self, conv_id: str, member_id: str) -> Reply | None:
        """The code message alone (a fresh request, no source): kept for callers of the first version."""
        outcome = await self.request(conv_id, member_id)
        return next((r for r in outcome.send if r.meta.get("otp")), None)

    def _address(self, member: Member | None) -> tuple[str, str] | None:
        for channel in self.channels if member is not None else ():
            assert member is not None
            if channel == "sms" and member.phone:
                return channel, f"tel:{member.phone}"
            if channel == "email" and member.email:
                return channel, f"mailto:{member.email}"
        return None

    async def _alert(self, member_id: str, day_key: str) -> Reply | None:
        """The notice that someone asked too many codes, once a day, at the registered address."""
        if not await self.redis.hsetnx(day_key, "alerted", "1"):
            return None
        await self.redis.expire(day_key, DAY_TTL_S)
        address = self._address(await MemberStore(self.redis).get(member_id))
        if address is None:
            return None
        channel, urn = address
        meta = {"thread": {"subject": ALERT_SUBJECT.format(mutuelle=self.mutuelle)}, "otp_alert": True}
        return Reply(ALERT_TEXT.format(mutuelle=self.mutuelle), channel=channel, urn=urn, meta=meta)
