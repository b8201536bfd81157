"""Every HTTP operation of gateway/openapi.yaml fuzzed with schemathesis against the real product
(the aiohttp app with its workers, a real Redis, loopback Twilio and Telegram): valid and invalid
requests, once signed in as a supervisor (session cookie, CSRF token, allowed Origin, signed
Twilio forms, the Telegram secret, real ids mixed into the paths) and once as nobody.

Asserted: no answer is a 5xx, no request fails at the connection, and the product logs no ERROR and
no traceback. Hypothesis is derandomised, so a failure found in CI is found again by running this
file. A figure line per run (requests, statuses, elapsed time) is printed past pytest's capture.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest
import requests
import schemathesis
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from multidict import MultiDict
from redis.asyncio import Redis
from schemathesis import GenerationMode
from twilio.request_validator import RequestValidator

from bot.actions import state as bot_state
from channels.webchat.tokens import issue_token
from gateway import keys, unsubscribe
from gateway.envelope import inbound
from gateway.hours import holiday_name
from gateway.settings import Settings
from members.apikeys import ApiKeys
from members.records import Complaint, Member, MemberStore
from server.product import Product
from staff.users import Users
from tests.e2e.product import free_port
from tests.fakes.telegram import FakeTelegram
from tests.fakes.twilio import FakeTwilio
from tests.gateway.test_openapi import load_spec

pytestmark = pytest.mark.timeout(420)

TELEGRAM_TOKEN = "123456:TESTTOKEN"
TWILIO_SID = "AC" + "2" * 32
TWILIO_TOKEN = "t" * 32
PASSWORD = "une-phrase-de-passe-solide"
# Examples per operation and generation mode. ~57 operations: the signed-in run makes about
# 57 x 2 x 25 requests, the anonymous one 57 x 2 x 8 (see the figure lines for the time taken).
SIGNED_IN_EXAMPLES = 100
ANONYMOUS_EXAMPLES = 25


@dataclass
class Known:
    """Real ids the fuzzer mixes into paths and queries, so it also reaches records that exist."""

    base: str
    cookie: str
    csrf: str
    telegram_secret: str
    path_values: dict[str, list[str]] = field(default_factory=dict)
    query_values: dict[str, list[str]] = field(default_factory=dict)
    bodies: dict[str, dict[str, str]] = field(default_factory=dict)  # a valid body per path
    api_key: str = ""  # a write key of the records API (members/api.py)


@dataclass
class Tally:
    name: str
    statuses: Counter[int] = field(default_factory=Counter)
    by_operation: dict[str, Counter[int]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    samples: dict[tuple[str, int], str] = field(default_factory=dict)  # the first answer per status
    requests: int = 0
    elapsed_s: float = 0.0

    def figure(self) -> str:
        statuses = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        return (
            f"fuzz {self.name}: {self.requests} requests over {len(self.by_operation)} operations "
            f"in {self.elapsed_s:.1f} s ({statuses}); {len(self.failures)} failures"
        )


class ErrorRecords(logging.Handler):
    """Every ERROR record and every record carrying a traceback, from any logger of the process."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            exc = record.exc_info[1] if record.exc_info else None
            self.records.append(f"{record.levelname} {record.name}: {record.getMessage()} {exc!r}")


@pytest.fixture
def error_records() -> Any:
    handler = ErrorRecords()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


@pytest.fixture
async def product(redis: Redis, settings_env: dict[str, str]) -> AsyncIterator[tuple[Product, str]]:
    """The whole product in this process: web routes and workers, SMS and Telegram to loopback fakes."""
    async with FakeTwilio(TWILIO_SID, TWILIO_TOKEN) as twilio, FakeTelegram(TELEGRAM_TOKEN) as telegram:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            **settings_env,
            "PUBLIC_URL": base,
            "RESPONDER": "ack",
            # The per-address limits of public endpoints would answer most of the fuzzer's requests 429.
            "PUBLIC_RATE_PER_MIN": "1000000",
            "PUBLIC_BURST": "1000000",
            "CALLBACK_RATE_PER_HOUR": "100000000",
            "CALLBACK_BURST": "1000000",
            "API_BURST": "1000000",  # the records API's per-key rate, likewise
            "SMTP_LISTEN_PORT": "0",
            "TELEGRAM_TOKEN": TELEGRAM_TOKEN,
            "TELEGRAM_API_BASE": telegram.base_url,
            "TWILIO_ACCOUNT_SID": TWILIO_SID,
            "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
            "TWILIO_FROM": "+33700000003",
            "TWILIO_WHATSAPP_FROM": "+33700000003",
            "TWILIO_VOICE_NUMBER": "+33700000004",
            "TWILIO_API_BASE": twilio.base_url,
        }
        gateway = Product(Settings.from_env(env), redis)
        server = TestServer(gateway.build_app(), host="127.0.0.1", port=port)
        await server.start_server()
        try:
            yield gateway, base
        finally:
            await asyncio.wait_for(server.close(), 30)


async def seed(product: Product, base: str) -> Known:
    """Users, members, conversations waiting for an agent, a complaint, a campaign with an audience,
    a callback request; then a supervisor signs in through the login form."""
    gateway = product.gateway
    redis = gateway.redis
    users = Users(redis)
    await users.create("sophie", PASSWORD, first_name="Sophie", role="supervisor", skills=[], capacity=20)
    await users.create("julie", PASSWORD, first_name="Julie", role="agent", skills=["benefits"], capacity=2)
    store = MemberStore(redis)
    today = dt.date.today()
    async with redis.pipeline(transaction=False) as pipe:
        for i in range(1, 6):
            store.write(pipe, Member(f"M{i:07d}", "Léa", f"Roux{i}", "1980-05-05", f"+3319900{i:04d}",
                                     f"lea.roux{i}@example.org", "confort", "Bretagne", "famille", "51.00",
                                     (today + dt.timedelta(days=90)).isoformat()))  # fmt: skip
        store.write_record(pipe, Complaint("REC-1", "M0000001", today.isoformat(), False,
                                           (today + dt.timedelta(days=10)).isoformat(), "open", "objet", ""))  # fmt: skip
        await pipe.execute()
    conversations = []
    for i in range(4):
        urn = f"tel:+3361234560{i}"
        await gateway.router.handle(inbound("sms", urn, "je veux un conseiller", f"SMseed{i}"))
        contact = await redis.get(keys.address(urn))
        conv = str(await redis.get(keys.open_conversation(contact, "sms")))
        await bot_state.handoff(redis, conv, reason="ask_human", intent="card_status", member=None, summary="x")
        conversations.append(conv)

    async with aiohttp.ClientSession(headers={"Origin": base}, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(f"{base}/console/login", data={"login": "sophie", "password": PASSWORD}) as resp:
            assert resp.status == 200 and resp.url.path == "/console/supervisor"
            found = re.search(r'name="csrf-token" content="([^"]+)"', await resp.text())
            assert found is not None
            csrf = found.group(1)
        cookie = next(c.value for c in http.cookie_jar if c.key == "mgw_session")
        headers = {"X-CSRF-Token": csrf}
        effective = (today + dt.timedelta(days=75)).replace(day=1)
        spec = {"kind": "information", "title": "Nouvelle agence", "effective_date": effective.isoformat(),
                "channels": ["email", "sms"], "values": {"message": "Une agence ouvre à Rennes."}}  # fmt: skip
        async with http.post(f"{base}/console/api/campaigns", json=spec, headers=headers) as resp:
            assert resp.status == 201, await resp.text()
            campaign = (await resp.json())["id"]
        async with http.post(f"{base}/console/api/campaigns", json=spec, headers=headers) as resp:
            other_campaign = (await resp.json())["id"]
        upload = f"{base}/console/api/campaigns/{campaign}/audience"
        async with http.post(upload, data=b"M0000001\nM0000002\nM0000003\n", headers=headers) as resp:
            assert resp.status == 200
        day = today + dt.timedelta(days=1)
        while day.weekday() >= 5 or holiday_name(day):  # the callback form refuses public holidays
            day += dt.timedelta(days=1)
        callback = {"phone": "06 12 34 56 78", "date": day.isoformat(), "slot": "14:00-18:00", "reason": "devis"}
        async with http.post(f"{base}/api/callbacks", json=callback) as resp:
            assert resp.status == 201
            callback_id = (await resp.json())["id"]

    _, chat_token = issue_token(gateway.settings.secret_key)
    api_key = await ApiKeys(redis).create("fuzz", "write")
    return Known(
        api_key=api_key,
        base=base,
        cookie=cookie,
        csrf=csrf,
        telegram_secret=gateway.channels["telegram"].webhook_secret,  # type: ignore[attr-defined]
        path_values={
            "conv": conversations,
            "cid": [campaign, other_campaign],
            "cb": [callback_id],
            "member": ["M0000001"],
            "ref": ["REC-1"],
            "token": [unsubscribe.token(gateway.settings.secret_key, "M0000002")],
            "number": ["M0000001"],
            "kind": ["complaints"],
            "rid": ["REC-1"],
        },
        query_values={"token": [chat_token]},
        bodies={"/api/callbacks": callback, "/callback": callback},
    )


def twilio_signature(case: schemathesis.Case, public_url: str) -> str:
    """Sign the form exactly as it will be sent (the same serialisation as ``case.call``)."""
    kwargs = case.as_transport_kwargs(base_url=public_url)
    prepared = requests.Request(
        method=kwargs["method"],
        url=kwargs["url"],
        params=kwargs.get("params"),
        data=kwargs.get("data"),
        json=kwargs.get("json"),
        headers=kwargs.get("headers"),
    ).prepare()
    body = prepared.body or b""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else str(body)
    params = MultiDict(parse_qsl(text, keep_blank_values=True))
    return str(RequestValidator(TWILIO_TOKEN).compute_signature(public_url + str(prepared.path_url), params))


def fuzz(name: str, base: str, known: Known | None, examples: int) -> Tally:
    """Run every operation in both generation modes; never raises on a bad answer, records it."""
    schema = schemathesis.openapi.from_dict(load_spec())
    tally = Tally(name)
    http = requests.Session()
    started = time.monotonic()
    signed_in = known is not None
    headers: dict[str, str] = {}
    cookies: dict[str, str] = {}
    if known is not None:
        headers = {"Origin": base, "X-CSRF-Token": known.csrf, "X-Telegram-Bot-Api-Secret-Token": known.telegram_secret,
                   "Authorization": f"Bearer {known.api_key}"}  # fmt: skip
        cookies = {"mgw_session": known.cookie}
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        if signed_in and operation.path == "/console/logout":
            continue  # would end the session the rest of the run uses; fuzzed in the anonymous run
        counter = tally.by_operation.setdefault(label, Counter())
        send = _sender(tally, label, counter, http, base, headers, cookies, sign_twilio=signed_in)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategies = [operation.as_strategy(generation_mode=mode)]
            if known is not None:
                strategies += _with_known_values(operation, mode, known)
            run = settings(
                max_examples=examples,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
                verbosity=Verbosity.quiet,
            )(given(case=st.one_of(strategies))(send))
            try:
                run()
            except Unsatisfiable:  # nothing to make invalid (no parameter, no body): positive only
                assert mode == GenerationMode.NEGATIVE, label
    tally.elapsed_s = time.monotonic() - started
    return tally


def _sender(
    tally: Tally,
    label: str,
    counter: Counter[int],
    http: requests.Session,
    base: str,
    headers: dict[str, str],
    cookies: dict[str, str],
    *,
    sign_twilio: bool,
) -> Any:
    def send(case: schemathesis.Case) -> None:
        extra = dict(headers)
        if sign_twilio and case.path.startswith(("/sms/twilio/", "/whatsapp/twilio/")):
            extra["X-Twilio-Signature"] = twilio_signature(case, base)
        tally.requests += 1
        try:
            resp = case.call(base_url=base, session=http, headers=extra, cookies=cookies,
                             timeout=20, allow_redirects=False)  # fmt: skip
        except requests.RequestException as exc:
            tally.failures.append(f"{label}: {type(exc).__name__}\n{case.as_curl_command(extra)}")
            return
        counter[resp.status_code] += 1
        tally.samples.setdefault((label, resp.status_code), resp.content[:300].decode("utf-8", "replace"))  # .xlsx is binary
        tally.statuses[resp.status_code] += 1
        if resp.status_code >= 500:
            tally.failures.append(f"{label} -> {resp.status_code} {resp.content[:200]!r}\n{case.as_curl_command(extra)}")

    return send


def _with_known_values(operation: Any, mode: GenerationMode, known: Known) -> list[Any]:
    """Strategies whose path (or query) names records that exist."""
    out = []
    names = re.findall(r"\{([^}]+)\}", operation.path)
    if names and all(n in known.path_values for n in names):
        choices = [
            dict(zip(names, values, strict=True))
            for values in zip(*(known.path_values[n] for n in names), strict=False)
        ]
        out += [operation.as_strategy(generation_mode=mode, path_parameters=values) for values in choices]
    if mode == GenerationMode.POSITIVE and operation.method.upper() == "POST" and operation.path in known.bodies:
        body = known.bodies[operation.path]
        out.append(operation.as_strategy(generation_mode=mode, body=body))
    if operation.path == "/webchat/ws":
        for token in known.query_values["token"]:
            out.append(operation.as_strategy(generation_mode=mode, query={"token": token}))
    return out


def _report(tally: Tally, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print("\n" + tally.figure())


async def test_fuzz_signed_in_as_a_supervisor(
    product: tuple[Product, str], error_records: ErrorRecords, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway, base = product
    known = await seed(gateway, base)
    tally = await asyncio.to_thread(fuzz, "signed in", base, known, SIGNED_IN_EXAMPLES)
    _report(tally, capsys)
    assert not tally.failures, "\n\n".join(tally.failures[:20])
    assert not error_records.records, "\n".join(error_records.records[:20])
    # The fuzzer got past the checks: console and campaign APIs answered, signed webhooks were taken.
    reached = {label for label, c in tally.by_operation.items() if any(200 <= s < 300 for s in c)}
    for label in ("GET /console/api/state", "POST /console/api/campaigns", "GET /console/api/campaigns/{cid}",
                  "POST /telegram/webhook", "POST /sms/twilio/inbound", "POST /api/callbacks",
                  "POST /webchat/session", "POST /console/api/conversations/{conv}/note"):  # fmt: skip
        assert label in reached, (label, {k: v for k, v in tally.samples.items() if k[0] == label})


async def test_fuzz_anonymous(
    product: tuple[Product, str], error_records: ErrorRecords, capsys: pytest.CaptureFixture[str]
) -> None:
    _, base = product
    tally = await asyncio.to_thread(fuzz, "anonymous", base, None, ANONYMOUS_EXAMPLES)
    _report(tally, capsys)
    assert not tally.failures, "\n\n".join(tally.failures[:20])
    assert not error_records.records, "\n".join(error_records.records[:20])
    # Nobody reaches a console API or a webhook without its credentials.
    for label, statuses in tally.by_operation.items():
        if label.split(" ", 1)[1].startswith(("/console/api/", "/sms/", "/whatsapp/", "/telegram/")):
            assert not any(200 <= s < 300 for s in statuses), (label, statuses)
