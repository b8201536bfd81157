"""Contacts: one person with addresses on several channels, linked to a member record.

Every operation is idempotent so the router may handle the same message twice after a
crash: an address maps to its contact through ``SET NX``, and a member is linked when one
of the contact's addresses is the member's registered phone or e-mail.

A message whose sender is not proven (``Message.sender_authentic is False``: an e-mail that failed
DMARC at the MX) gets a contact of its own for that address, never linked to a member and apart
from the contact of the proven address: a forger neither joins the member's conversations nor
inherits their verification, and the bot never asks them the member's birth date.
"""

from __future__ import annotations

from redis.asyncio import Redis

from gateway import keys
from gateway.envelope import new_id, now_ms

# The address index of unproven senders: "<prefix>:urn:unproven:mailto:jeanne@example.fr".
UNPROVEN = "unproven:"
# Schemes whose address is a phone number in E.164: an SMS (``tel:+33…``) and a WhatsApp account
# (``whatsapp:+33…``, the number WhatsApp was registered with) both link to the member with that phone.
PHONE_SCHEMES = ("tel", "whatsapp")


def member_key_for(urn: str) -> str | None:
    """The member index key an address could match, if any (registered phone or e-mail)."""
    scheme, _, path = urn.partition(":")
    if scheme in PHONE_SCHEMES and path.startswith("+"):
        return keys.member_by_phone(path)
    if scheme == "mailto" and "@" in path:
        return keys.member_by_email(path)
    return None


class Contacts:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def resolve(self, urn: str, channel: str, *, proven: bool = True) -> str:
        """The contact id owning ``urn``, created on first sight; with ``proven=False`` the separate,
        never-linked contact of mail that only claims to come from ``urn``."""
        index = keys.address(urn if proven else UNPROVEN + urn)
        existing = await self.redis.get(index)
        if existing:
            return str(existing)
        candidate = new_id()
        won = await self.redis.set(index, candidate, nx=True)
        contact_id = candidate if won else str(await self.redis.get(index))
        if won:
            mapping = {"id": contact_id, "created_ms": now_ms(), "first_channel": channel}
            if not proven:
                mapping["unproven"] = 1
            await self.redis.hset(keys.contact(contact_id), mapping=mapping)
        await self.redis.sadd(keys.contact_addresses(contact_id), urn)
        if proven:
            await self.link_member(contact_id, urn)
        return contact_id

    async def link_member(self, contact_id: str, urn: str) -> str | None:
        """Link the contact to the member whose registered phone or e-mail is ``urn``."""
        index = member_key_for(urn)
        if index is None:
            return None
        member_id = await self.redis.get(index)
        if not member_id:
            return None
        await self.redis.hsetnx(keys.contact(contact_id), "member_id", member_id)
        await self.redis.sadd(keys.member_contacts(str(member_id)), contact_id)
        return str(member_id)

    async def get(self, contact_id: str) -> dict[str, str]:
        data: dict[str, str] = await self.redis.hgetall(keys.contact(contact_id))
        return data

    async def addresses(self, contact_id: str) -> set[str]:
        urns: set[str] = await self.redis.smembers(keys.contact_addresses(contact_id))
        return urns

    async def attach(self, contact_id: str, urn: str) -> None:
        """Attach another address to a contact (e.g. once a member proves who they are)."""
        await self.redis.set(keys.address(urn), contact_id)
        await self.redis.sadd(keys.contact_addresses(contact_id), urn)
        await self.link_member(contact_id, urn)


async def register_member(redis: Redis, member_id: str, *, phone: str | None, email: str | None) -> None:
    """Index a member's registered phone (E.164) and e-mail so contacts can be linked."""
    if phone:
        await redis.set(keys.member_by_phone(phone), member_id)
    if email:
        await redis.set(keys.member_by_email(email), member_id)
