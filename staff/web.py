"""The staff's sign-in, shared by every staff page (the agents' console, the campaign console).

Security: a session cookie (HttpOnly, SameSite=Strict, Secure behind https), a CSRF token per
session required on every POST (header ``X-CSRF-Token``), the Origin checked on POSTs and on
WebSockets, login attempts rate-limited. ``guarded(roles)`` wraps a JSON handler: session, role,
CSRF and Origin checked; a ``Refused`` raised inside becomes its status with the French reason.
``page_for(roles)`` does the same for a page (redirect to the login page when signed out).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from aiohttp import web
from redis.asyncio import Redis

from gateway import jsonbody
from gateway.envelope import BadRequest
from gateway.settings import Settings
from staff.users import SKILL_LABELS, User, UserError, Users, csrf_ok, phone_display

log = logging.getLogger(__name__)

COOKIE = "mgw_session"
STATIC = Path(__file__).resolve().parent / "static"
USER_KEY: web.RequestKey[User] = web.RequestKey("console_user")
CSRF_KEY: web.RequestKey[str] = web.RequestKey("console_csrf")
ALL_ROLES = ("agent", "supervisor", "communications")
# Where each role lands after signing in.
HOME = {"agent": "/console", "supervisor": "/console/supervisor", "communications": "/console/campaigns"}
# In French, for the forbidden page: who a page is for, the user's role, the way back.
ROLE_PLURAL = {"agent": "conseillers", "supervisor": "superviseurs", "communications": "chargés de communication"}
ROLE_LABEL = {"agent": "conseiller", "supervisor": "superviseur", "communications": "communication"}
HOME_LABEL = {"agent": "à la console", "supervisor": "au tableau de bord", "communications": "aux campagnes"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SeenHook = Callable[[User], Awaitable[None]]


class Refused(Exception):
    """An operation a staff member cannot do, with the reason in French (HTTP status in ``status``)."""

    def __init__(self, message: str, status: int = 409, code: str = "refused") -> None:
        super().__init__(message)
        self.status = status
        self.code = code  # what the page may act on (``no_phone``: a link to « Mon profil »)


class StaffSite:
    """Sessions, the login and logout routes and the guards every staff page and API uses."""

    def __init__(self, settings: Settings, redis: Redis, templates: jinja2.Environment) -> None:
        self.settings = settings
        self.redis = redis
        self.users = Users(redis)
        self.templates = templates
        self.secure = settings.public_url.startswith("https://")
        origins = {origin_of(settings.public_url), origin_of(settings.base_url)}
        if settings.host in ("127.0.0.1", "localhost", "0.0.0.0"):
            origins |= {f"http://localhost:{settings.port}", f"http://127.0.0.1:{settings.port}"}
        self.origins = origins
        # Called on every guarded request (the agents' console counts a signed-in agent as present).
        self.seen: list[SeenHook] = []

    def page(self, name: str, status: int = 200, **values: Any) -> web.Response:
        html = self.templates.get_template(name).render(**values)
        # "same-origin" (not the site-wide "no-referrer") so the browser sends our Origin on form posts.
        headers = {"Cache-Control": "no-store", "Referrer-Policy": "same-origin"}
        return web.Response(text=html, content_type="text/html", status=status, headers=headers)

    def origin_ok(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:  # same-origin form posts from old browsers; the CSRF token still applies
            return request.method == "GET" or bool(request.headers.get("X-CSRF-Token"))
        return origin.lower().rstrip("/") in self.origins

    def socket_origin_ok(self, request: web.Request) -> bool:
        return request.headers.get("Origin", "").lower().rstrip("/") in self.origins

    async def user(self, request: web.Request) -> tuple[User, str] | None:
        """The signed-in user and the session's CSRF token, or None."""
        return await self.users.session(request.cookies.get(COOKIE, ""))

    async def mark_seen(self, user: User) -> None:
        for hook in self.seen:
            await hook(user)

    def guarded(self, roles: tuple[str, ...] = ("agent", "supervisor")) -> Callable[[Handler], Handler]:
        """Session required; POSTs need the CSRF token and an allowed Origin. Refused → its status."""

        def wrap(handler: Handler) -> Handler:
            async def inner(request: web.Request) -> web.StreamResponse:
                found = await self.user(request)
                if found is None:
                    return web.json_response({"error": "login_required", "detail": "Connectez-vous."}, status=401)
                user, csrf = found
                if user.role not in roles:
                    return web.json_response({"error": "forbidden", "detail": "Accès réservé."}, status=403)
                if request.method not in ("GET", "HEAD") and (
                    not self.origin_ok(request) or not csrf_ok(csrf, request.headers.get("X-CSRF-Token"))
                ):
                    return web.json_response(
                        {"error": "csrf", "detail": "Jeton de sécurité manquant ou invalide : rechargez la page."},
                        status=403,
                    )
                request[USER_KEY] = user
                request[CSRF_KEY] = csrf
                await self.mark_seen(user)
                try:
                    return await handler(request)
                except Refused as exc:
                    return web.json_response({"error": exc.code, "detail": str(exc)}, status=exc.status)

            return inner

        return wrap

    async def page_for(self, request: web.Request, roles: tuple[str, ...]) -> tuple[User, str]:
        """The signed-in user of a page (redirects to the login page, 403 for another role)."""
        found = await self.user(request)
        if found is None:
            raise web.HTTPSeeOther("/console/login")
        if found[0].role not in roles:
            raise self.forbidden(found[0], roles)
        return found

    def forbidden(self, user: User, roles: tuple[str, ...]) -> web.HTTPForbidden:
        """The 403 page, in the console's layout, with the way back to the user's own home page."""
        html = self.templates.get_template("console/forbidden.html.j2").render(
            user=user,
            reserved="aux " + " et aux ".join(ROLE_PLURAL.get(r, r) for r in roles),
            role=ROLE_LABEL.get(user.role, user.role),
            home=HOME.get(user.role, "/console/login"),
            home_label=HOME_LABEL.get(user.role, "à la connexion"),
        )
        return web.HTTPForbidden(
            text=html,
            content_type="text/html",
            headers={"Cache-Control": "no-store", "Referrer-Policy": "same-origin"},
        )

    def routes(self) -> web.RouteTableDef:
        routes = web.RouteTableDef()

        @routes.get("/console/login")
        async def login_page(request: web.Request) -> web.Response:
            return self.page("console/login.html.j2", error="")

        @routes.post("/console/login")
        async def login(request: web.Request) -> web.StreamResponse:
            if not self.origin_ok(request) and request.headers.get("Origin") is not None:
                return self.page("console/login.html.j2", status=403, error="Origine refusée.")
            try:
                form = await request.post()
            except ValueError:
                return self.page("console/login.html.j2", status=400, error="Formulaire illisible.")
            login_name = str(form.get("login") or "")[:60]
            password = str(form.get("password") or "")[:200]
            client = request.remote or "?"
            if not await self.users.login_allowed(login_name, client):
                return self.page(
                    "console/login.html.j2",
                    status=429,
                    error="Trop d'essais : patientez une minute avant de réessayer.",
                )
            user = await self.users.authenticate(login_name, password)
            if user is None:
                log.info("console login refused", extra={"role": "console"})
                return self.page("console/login.html.j2", status=401, error="Identifiant ou mot de passe incorrect.")
            token, _ = await self.users.open_session(user)
            resp = web.Response(status=303, headers={"Location": HOME[user.role], "Cache-Control": "no-store"})
            resp.set_cookie(COOKIE, token, httponly=True, samesite="Strict", secure=self.secure, path="/")
            log.info("console login", extra={"user": user.login})
            return resp

        @routes.post("/console/logout")
        @self.guarded(ALL_ROLES)
        async def logout(request: web.Request) -> web.StreamResponse:
            await self.users.close_session(request.cookies.get(COOKIE, ""))
            resp = web.json_response({"ok": True})
            resp.del_cookie(COOKIE, path="/")
            return resp

        def profile(user: User, csrf: str, *, status: int = 200, typed: str | None = None, error: str = "",
                    saved: str = "") -> web.Response:  # fmt: skip
            return self.page(
                "console/profile.html.j2", status=status, user=user, csrf=csrf,
                phone=phone_display(user.phone) if typed is None else typed, error=error, saved=saved,
                role=ROLE_LABEL.get(user.role, user.role), home=HOME.get(user.role, "/console"),
                home_label=HOME_LABEL.get(user.role, "à la console"),
                skills=[SKILL_LABELS.get(s, s) for s in user.skills],
            )  # fmt: skip

        @routes.get("/console/profile")
        async def profile_page(request: web.Request) -> web.StreamResponse:
            """« Mon profil »: who the user is, and the phone their calls ring (changed here)."""
            user, csrf = await self.page_for(request, ALL_ROLES)
            return profile(user, csrf)

        @routes.post("/console/profile")
        async def profile_form(request: web.Request) -> web.StreamResponse:
            """The same change without the page's script: a plain form post, its CSRF token in a hidden field."""
            user, csrf = await self.page_for(request, ALL_ROLES)
            try:
                form = await request.post()
            except ValueError:
                return profile(user, csrf, status=400, error="Formulaire illisible.")
            if not self.origin_ok(request) or not csrf_ok(csrf, str(form.get("csrf") or "")):
                return profile(
                    user, csrf, status=403, error="Jeton de sécurité manquant ou invalide : rechargez la page."
                )
            typed = str(form.get("phone") or "")[:60]
            try:
                user = await self.users.set_phone(user.login, typed)
            except UserError as exc:
                return profile(user, csrf, status=400, typed=typed, error=str(exc))
            log.info("profile phone changed", extra={"user": user.login, "has_phone": bool(user.phone)})
            shown = phone_display(user.phone)
            saved = (
                f"Numéro enregistré : {shown}."
                if user.phone
                else "Numéro retiré : vous ne pouvez plus prendre d'appel."
            )
            return profile(user, csrf, saved=saved)

        @routes.post("/console/api/profile")
        @self.guarded(ALL_ROLES)
        async def profile_save(request: web.Request) -> web.Response:
            """The signed-in user's own phone: French national or international form, kept as E.164."""
            data = await read_json(request)
            try:
                user = await self.users.set_phone(request[USER_KEY].login, str(data.get("phone") or "")[:60])
            except UserError as exc:
                raise Refused(str(exc), 400, code="bad_phone") from exc
            log.info("profile phone changed", extra={"user": user.login, "has_phone": bool(user.phone)})
            return web.json_response({"ok": True, "has_phone": bool(user.phone), "phone": phone_display(user.phone)})

        routes.get("/console/static/console.css")(static_file(STATIC / "console.css", "text/css"))
        routes.get("/console/static/profile.js")(static_file(STATIC / "profile.js", "application/javascript"))
        return routes


async def read_json(request: web.Request) -> dict[str, Any]:
    """A request's JSON object; Refused (400) when it is not one."""
    try:
        return await jsonbody.read_object(request)  # the one reader of request JSON: hostile bodies refused
    except BadRequest as exc:
        raise Refused(str(exc), 400) from exc


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def static_file(path: Path, content_type: str) -> Handler:
    """A handler serving one of the staff pages' static files (scripts, style sheet), read once."""
    body = path.read_bytes()

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type, headers={"Cache-Control": "no-cache"})

    return handler
