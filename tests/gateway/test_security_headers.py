"""Every answer of the web process carries the security headers, and every HTML page (error pages and
the login page included) a strict Content-Security-Policy: nothing inline, nothing from elsewhere.

The GET routes are read from the application's own router, so a page added later is checked too (a
route with a path parameter this test does not know fails it: add a value to ``PARAMS``). Each is
asked anonymously and as each role, since a page may answer HTML only to a signed-in user."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from gateway import unsubscribe
from gateway.settings import Settings
from server.product import Product
from staff.users import Users
from tests.e2e.product import free_port

PASSWORD = "une-phrase-de-passe-solide"
ROLES = {"julie": "agent", "sophie": "supervisor", "claire": "communications"}
PARAMS = {  # a value for each path parameter of a GET route
    "conv": "c-inconnue",
    "cb": "cb-inconnu",
    "member": "M0000001",
    "ref": "REC-1",
    "cid": "camp-inconnue",
    "action": "pause",
    "number": "M0000001",
    "kind": "claims",
    "rid": "C0000001",
}


def strict_problems(policy: str) -> list[str]:
    """What is not strict in a Content-Security-Policy header (empty when it is)."""
    directives: dict[str, list[str]] = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = words[1:]
    want = {
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
    problems = [f"{name} is {directives.get(name)}, want {value}" for name, value in want.items()
                if directives.get(name) != value]  # fmt: skip
    if directives.get("default-src") not in (["'none'"], ["'self'"]):
        problems.append(f"default-src is {directives.get('default-src')}")
    if not set(directives.get("img-src", [])) <= {"'self'", "data:"}:
        problems.append(f"img-src is {directives.get('img-src')}")
    for name, sources in directives.items():
        for source in sources:
            # No wildcard, no bare scheme (ws: would allow a socket to any host), nothing unsafe.
            if source in ("*", "ws:", "wss:", "http:", "https:") or "unsafe" in source or source.startswith("'nonce"):
                problems.append(f"{name} allows {source}")
    return problems


@dataclass
class Site:
    base: str
    sessions: dict[str, aiohttp.ClientSession]  # "anonymous" and each login
    routes: list[str]  # GET paths with their parameters filled in
    token: str  # a valid unsubscribe token


@pytest.fixture
async def site(redis: Redis, settings_env: dict[str, str]) -> AsyncIterator[Site]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **settings_env,
        "PUBLIC_URL": base,
        "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "TWILIO_AUTH_TOKEN": "t" * 32,
        "TWILIO_FROM": "+33100000000",
        "TWILIO_API_BASE": "http://127.0.0.1:9",  # the web role sends nothing
        "TELEGRAM_TOKEN": "7000001:AAHeadersTestTokenForLoopbackOnly00",
        "TELEGRAM_API_BASE": "http://127.0.0.1:9",
    }
    settings = Settings.from_env(env)
    gw = Product(settings, redis, roles=frozenset({"web"}))
    app = gw.build_app()
    paths: list[str] = []
    for route in app.router.routes():
        if route.method != "GET":
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or ""
        for name in re.findall(r"\{(\w+)(?::[^}]*)?\}", path):
            if name == "token":
                continue  # filled below with a real one
            assert name in PARAMS, f"GET {path}: give the parameter {name!r} a value in PARAMS"
        paths.append(path)
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    users = Users(redis)
    for login, role in ROLES.items():
        await users.create(login, PASSWORD, first_name=login.title(), role=role, skills=["benefits"])
    sessions: dict[str, aiohttp.ClientSession] = {}
    try:
        for who in ("anonymous", *ROLES):
            http = aiohttp.ClientSession(headers={"Origin": base}, cookie_jar=aiohttp.CookieJar(unsafe=True))
            sessions[who] = http
            if who != "anonymous":
                async with http.post(f"{base}/console/login", data={"login": who, "password": PASSWORD}) as resp:
                    assert resp.status == 200, who
        token = unsubscribe.token(settings.secret_key, "M0000001")
        filled = []
        for path in paths:
            for name, value in {**PARAMS, "token": token}.items():
                path = re.sub(r"\{" + name + r"(?::[^}]*)?\}", value, path)
            filled.append(path)
        yield Site(base, sessions, sorted(set(filled)), token)
    finally:
        for http in sessions.values():
            await http.close()
        await server.close()


def check_headers(where: str, resp: aiohttp.ClientResponse, html_pages: set[str]) -> None:
    """``where`` is "METHOD PATH (who)"; an HTML answer adds "METHOD PATH" to ``html_pages``."""
    headers = resp.headers
    assert headers.get("X-Content-Type-Options") == "nosniff", where
    assert headers.get("X-Frame-Options") == "DENY", where
    policy = headers.get("Content-Security-Policy", "")
    if resp.content_type == "text/html":
        html_pages.add(where.split(" (")[0])
        assert policy, f"{where}: an HTML page without a Content-Security-Policy"
    if policy:
        assert strict_problems(policy) == [], f"{where}: {policy}"


async def test_every_page_and_answer_carries_a_strict_policy(site: Site) -> None:
    html_pages: set[str] = set()
    for who, http in site.sessions.items():
        for path in site.routes:
            if path == "/webchat/ws" or path == "/console/ws":
                continue  # WebSockets: no page (their refusals are JSON, checked with the others)
            async with http.get(site.base + path, allow_redirects=False) as resp:
                await resp.read()
                check_headers(f"GET {path} ({who}, {resp.status})", resp, html_pages)
    # Error pages and forms answered with a page.
    anon = site.sessions["anonymous"]
    julie = site.sessions["julie"]
    asked = [
        (anon, "GET", "/nulle-part", None, 404),
        (anon, "GET", "/console/api/inconnu", None, 404),
        (anon, "POST", "/healthz", None, 405),
        (julie, "GET", "/console/supervisor", None, 403),
        (anon, "GET", "/desabonnement/faux-jeton", None, 404),
        (anon, "POST", f"/desabonnement/{site.token}", {"List-Unsubscribe": "One-Click"}, 200),
        (anon, "POST", "/console/login", {"login": "personne", "password": "faux"}, 401),
        (anon, "POST", "/callback", {"phone": "pas un numéro"}, 400),
        (anon, "POST", "/sms/twilio/inbound", {"Body": "x"}, 403),
    ]
    for http, method, path, form, status in asked:
        async with http.request(method, site.base + path, data=form, allow_redirects=False) as resp:
            await resp.read()
            assert resp.status == status, (method, path, resp.status)
            check_headers(f"{method} {path} ({resp.status})", resp, html_pages)
    async with anon.post(site.base + "/console/login", data={"login": "x", "password": "y"},
                         headers={"Origin": "http://ailleurs.example"}) as resp:  # fmt: skip
        assert resp.status == 403
        check_headers("POST /console/login (another origin)", resp, html_pages)
    # The HTML pages there are: each was seen, each with the policy.
    for page in ("GET /", "GET /callback", "GET /console/login", "GET /console", "GET /console/supervisor",
                 "GET /console/campaigns", f"GET /desabonnement/{site.token}", "GET /desabonnement/faux-jeton",
                 f"POST /desabonnement/{site.token}", "POST /console/login", "POST /callback"):  # fmt: skip
        assert page in html_pages, f"{page} was not answered with an HTML page: {sorted(html_pages)}"


def test_the_strictness_check_refuses_loose_policies() -> None:
    """The check above would catch the policy this product had before, and the usual loosenings."""
    old = ("default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
           "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")  # fmt: skip
    assert any("ws:" in p for p in strict_problems(old))
    assert any("object-src" in p for p in strict_problems(old))
    from gateway.app import CONTENT_SECURITY_POLICY

    assert strict_problems(CONTENT_SECURITY_POLICY) == []
    loose = CONTENT_SECURITY_POLICY.replace("script-src 'self'", "script-src 'self' 'unsafe-inline'")
    assert strict_problems(loose) != []
