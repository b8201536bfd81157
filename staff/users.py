"""Console users (agents, supervisors, communications staff), their sessions and CSRF tokens.

Passwords are argon2id hashes (argon2-cffi). A session is a random cookie; Redis keeps only its
SHA-256 digest with the user and the session's CSRF token, for ``SESSION_TTL_S`` after the last
request. Login attempts are rate-limited per login and per client address (GCRA in Redis).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

import phonenumbers
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from redis.asyncio import Redis

from gateway import keys
from gateway.phones import normalise_phone
from gateway.ratelimit import RateLimiter

ROLES = ("agent", "supervisor", "communications")
SKILLS = ("benefits", "quotes", "complaints", "sales")
SKILL_LABELS = {"benefits": "Prestations", "quotes": "Devis", "complaints": "Réclamations", "sales": "Adhésions"}
SESSION_TTL_S = 8 * 3600
DEFAULT_TITLE = "conseiller"  # how members see an agent: « Julie, conseillère » (``--title``)
LOGIN_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,39}$")
PHONE_RE = re.compile(r"\+[1-9][0-9]{6,14}")
PHONE_REFUSED = (
    "Numéro de téléphone invalide : saisissez un numéro français (06 12 34 56 78) ou international (+33 6 12 34 56 78)."
)
_hasher = PasswordHasher()
# Verifying against this when the login is unknown keeps both answers equally slow.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class User:
    login: str
    first_name: str
    role: str
    skills: tuple[str, ...]
    capacity: int
    title: str = DEFAULT_TITLE
    phone: str = ""  # E.164: the phone « Prendre l'appel » and « Appeler » ring (calls, channels/voice)

    @property
    def is_supervisor(self) -> bool:
        return self.role == "supervisor"

    @property
    def speaker(self) -> str:
        """How the agent is named beside their messages, to members and in the console."""
        return f"{self.first_name}, {self.title}" if self.first_name else self.title.capitalize()

    def public(self) -> dict[str, object]:
        return {
            "login": self.login,
            "first_name": self.first_name,
            "role": self.role,
            "skills": list(self.skills),
            "capacity": self.capacity,
            "title": self.title,
            "speaker": self.speaker,
            "has_phone": bool(self.phone),
        }


class UserError(ValueError):
    pass


class UserExists(UserError):
    """The login is taken: changing it must be asked for (``update=True``)."""


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Users:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.limiter = RateLimiter(redis)

    async def create(
        self,
        login: str,
        password: str,
        *,
        first_name: str,
        role: str,
        skills: list[str],
        capacity: int = 3,
        title: str = DEFAULT_TITLE,
        update: bool = False,
        phone: str = "",
    ) -> User:
        """Create a user; an existing login is changed only with ``update`` (else ``UserExists``)."""
        login = login.strip().lower()
        if not LOGIN_RE.fullmatch(login):
            raise UserError("identifiant invalide : 2 à 40 caractères, lettres minuscules, chiffres, . _ -")
        if role not in ROLES:
            raise UserError(f"rôle inconnu : {role} (agent, supervisor ou communications)")
        unknown = [s for s in skills if s not in SKILLS]
        if unknown:
            raise UserError(f"compétence inconnue : {', '.join(unknown)} ({', '.join(SKILLS)})")
        if len(password) < 12:
            raise UserError("mot de passe trop court : 12 caractères au moins")
        if not first_name.strip():
            raise UserError("prénom manquant : il est donné aux adhérents (interlocuteur identifié)")
        if not 1 <= capacity <= 20:
            raise UserError("capacité invalide : de 1 à 20 conversations à la fois")
        title = " ".join(title.split())
        if not 1 <= len(title) <= 40:
            raise UserError("titre invalide : de 1 à 40 caractères (« conseillère », « conseiller »…)")
        phone = agent_phone(phone)
        created = await self.redis.hget(keys.user(login), "created_ms")
        if await self.exists(login) and not update:
            raise UserExists(f"l'identifiant {login} existe déjà")
        await self.redis.hset(
            keys.user(login),
            mapping={
                "login": login,
                "first_name": first_name.strip(),
                "role": role,
                "skills": ",".join(skills or (SKILLS if role == "supervisor" else ())),
                "capacity": str(capacity),
                "password": _hasher.hash(password),
                "title": title,
                "phone": phone,
                "created_ms": created or str(int(time.time() * 1000)),
                **({"updated_ms": str(int(time.time() * 1000))} if created else {}),
            },
        )
        await self.redis.sadd(keys.USERS, login)
        user = await self.get(login)
        assert user is not None
        return user

    async def set_phone(self, login: str, raw: str) -> User:
        """Change only the user's phone (the profile page, ``run.py set-phone``): a French number in its
        national form or any number in international form, kept as E.164; empty removes it."""
        login = login.strip().lower()
        phone = agent_phone(raw)
        if not LOGIN_RE.fullmatch(login) or not await self.exists(login):
            raise UserError(f"utilisateur inconnu : {login}")
        await self.redis.hset(keys.user(login), mapping={"phone": phone, "updated_ms": str(int(time.time() * 1000))})
        user = await self.get(login)
        if user is None:
            raise UserError(f"utilisateur désactivé : {login}")
        return user

    async def exists(self, login: str) -> bool:
        """Whether the login is taken (a disabled user's too)."""
        return bool(await self.redis.exists(keys.user(login.strip().lower())))

    async def get(self, login: str) -> User | None:
        data = await self.redis.hgetall(keys.user(login))
        if not data or data.get("disabled") == "1":
            return None
        return User(
            login=data["login"],
            first_name=data.get("first_name", ""),
            role=data.get("role", "agent"),
            skills=tuple(s for s in data.get("skills", "").split(",") if s),
            capacity=int(data.get("capacity") or 3),
            title=data.get("title") or DEFAULT_TITLE,
            phone=data.get("phone", ""),
        )

    async def all(self) -> list[User]:
        out = [await self.get(login) for login in sorted(await self.redis.smembers(keys.USERS))]
        return [u for u in out if u is not None]

    async def login_allowed(self, login: str, client: str) -> bool:
        """5 attempts, then one every 12 s, per login and per client address."""
        waits = [
            await self.limiter.acquire(f"login:user:{login.lower()[:60]}", per_second=1 / 12, burst=5),
            await self.limiter.acquire(f"login:ip:{client}", per_second=1 / 6, burst=10),
        ]
        return max(waits) == 0.0

    async def authenticate(self, login: str, password: str) -> User | None:
        login = login.strip().lower()
        stored = await self.redis.hget(keys.user(login), "password") if LOGIN_RE.fullmatch(login) else None
        try:
            _hasher.verify(stored or _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        return await self.get(login) if stored else None

    # Sessions ----------------------------------------------------------------------------
    async def open_session(self, user: User) -> tuple[str, str]:
        """A new session for ``user``: (cookie token, CSRF token)."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        key = keys.session(digest(token))
        await self.redis.hset(
            key, mapping={"login": user.login, "csrf": csrf, "created_ms": str(int(time.time() * 1000))}
        )
        await self.redis.expire(key, SESSION_TTL_S)
        return token, csrf

    async def session(self, token: str) -> tuple[User, str] | None:
        """The session's user and CSRF token, sliding its expiry; None if unknown or expired."""
        if not token or len(token) > 100:
            return None
        key = keys.session(digest(token))
        data = await self.redis.hgetall(key)
        if not data:
            return None
        user = await self.get(data.get("login", ""))
        if user is None:
            return None
        await self.redis.expire(key, SESSION_TTL_S)
        return user, data.get("csrf", "")

    async def close_session(self, token: str) -> None:
        await self.redis.delete(keys.session(digest(token)))


def agent_phone(raw: str) -> str:
    """An agent's phone as E.164 (« 06 12 34 56 78 », « +33 6 12 34 56 78 », « 0033612345678 »); empty
    stays empty; anything else is a ``UserError`` in French (``PHONE_REFUSED``)."""
    text = " ".join(str(raw or "").split())
    if not text:
        return ""
    if len(text) > 40:
        raise UserError(PHONE_REFUSED)
    french = normalise_phone(text)
    if french:
        return french
    if text.startswith(("+", "00")):  # abroad (an agent working from another country), written internationally
        try:
            number = phonenumbers.parse("+" + text[2:] if text.startswith("00") else text, None)
        except phonenumbers.NumberParseException:
            raise UserError(PHONE_REFUSED) from None
        if phonenumbers.is_valid_number(number):
            e164 = str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
            if PHONE_RE.fullmatch(e164):
                return e164
    raise UserError(PHONE_REFUSED)


def phone_display(e164: str) -> str:
    """An E.164 number as people read it: « +33 6 12 34 56 78 »."""
    if not e164:
        return ""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL))


def csrf_ok(expected: str, given: str | None) -> bool:
    """The token sent matches, compared in constant time (as bytes: a token with characters beyond ASCII,
    as a hostile form may send, is a mismatch, not an error)."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), str(given).encode("utf-8", "surrogatepass"))
