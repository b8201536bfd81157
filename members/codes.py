"""Sending a one-time code to the member a conversation claims to be, at the registered address.

The bot's actions never send anything themselves: when a member must prove who they are with a
one-time code, the bot's answer carries ``{"otp": {"member": ...}}`` and the gateway's Rasa responder
asks ``OneTimeCodes.send``: a code is drawn, only its digest is kept (``members/otp.py``; the bot's
actions check it), and the code goes to the member's registered phone (SMS) or e-mail, whichever
channel is enabled, never to the address the conversation came from.
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis

from gateway import keys
from gateway.ratelimit import RateLimiter
from gateway.redis_client import replace_hash
from gateway.responders import Reply
from members.otp import new_code, otp_digest
from members.records import MemberStore

log = logging.getLogger(__name__)

OTP_TTL_S = 600
OTP_TEXT = "Votre code de vérification : {code}. Valable 10 minutes. Ne le communiquez à personne."


class OneTimeCodes:
    def __init__(
        self, redis: Redis, *, channels: tuple[str, ...] = ("sms", "email"), per_hour: float = 5.0, burst: int = 3
    ) -> None:
        self.redis = redis
        self.channels = channels  # the enabled ones a code may go by, in order of preference
        self.rate = (per_hour / 3600, burst)

    async def send(self, conv_id: str, member_id: str) -> Reply | None:
        """Draw a code for the conversation and address it to the member's registered phone or e-mail."""
        member = await MemberStore(self.redis).get(member_id)
        if member is None:
            return None
        # Anyone may claim to be a member and have a code sent to the member's phone: a few an hour per
        # member, so nobody can pester a member (or run up the SMS bill) through the bot. Past that, no
        # code goes; the conversation's answer is the same, the tries simply fail and hand off.
        if await RateLimiter(self.redis).acquire(f"otp:{member_id}", *self.rate) > 0:
            log.warning("one-time code withheld: too many for this member", extra={"conversation": conv_id})
            return None
        for channel in self.channels:
            if channel == "sms" and member.phone:
                urn = f"tel:{member.phone}"
            elif channel == "email" and member.email:
                urn = f"mailto:{member.email}"
            else:
                continue
            code = new_code()
            key = keys.conversation_otp(conv_id)
            await replace_hash(
                self.redis, key, {"member": member_id, "digest": otp_digest(conv_id, code)}, ttl_s=OTP_TTL_S
            )
            meta = {"thread": {"subject": "Votre code de vérification"}, "otp": True}
            return Reply(OTP_TEXT.format(code=code), channel=channel, urn=urn, meta=meta)
        log.warning("no channel to send a one-time code", extra={"conversation": conv_id})
        return None
