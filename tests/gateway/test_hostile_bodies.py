"""Hostile request bodies on every operation of gateway/openapi.yaml, against the same product as the
fuzz test (its fixture: the aiohttp app with its workers, a real Redis, loopback Twilio and Telegram).

schemathesis generates shallow, well-formed bodies; these are the ones it does not: 200 KB of nesting,
nesting under orjson's limit but over ours, numbers past a double, invalid UTF-8, lone surrogates,
NUL and control bytes, duplicate keys, a 200 KB string and one past the body limit, JSON scalars and
arrays where an object is expected. Each is sent once signed in as a supervisor (session cookie,
CSRF token, allowed Origin, the Telegram secret, a valid Twilio signature over the exact bytes) and
once as nobody. Asserted: every answer is a 4xx or a 2xx (never a 5xx, never a dropped connection),
the JSON routes refuse the unreadable bodies with a short French reason, and the product logs no
ERROR and no traceback. The web chat's socket gets the same bodies as frames.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import aiohttp
import pytest
from twilio.request_validator import RequestValidator

from channels.twilio_webhook import form_params
from channels.webchat.tokens import issue_token
from gateway import keys
from gateway.envelope import Message
from server.product import Product
from tests.gateway.test_fuzz import TWILIO_TOKEN, ErrorRecords, Known, error_records, product, seed
from tests.gateway.test_openapi import load_spec

__all__ = ["error_records", "product"]  # the fuzz test's fixtures, shared (imported for pytest)

pytestmark = pytest.mark.timeout(300)

DEEP_ARRAY = b"[" * 100_000 + b"]" * 100_000  # 200 KB: the body that answered 500 (RecursionError)
DEEP_OBJECT = b'{"a":' * 30_000 + b"1" + b"}" * 30_000
UNDER_ORJSON = b'{"update_id": 1, "token": "x", "text": ' + b"[" * 1000 + b"]" * 1000 + b"}"
OVER_OURS = b'{"update_id": 1, "phone": "0612345678", "text": ' + b'{"a":' * 100 + b"1" + b"}" * 100 + b"}"
HOSTILE: dict[str, bytes] = {
    "deep array (200 KB)": DEEP_ARRAY,
    "deep object": DEEP_OBJECT,
    "nested 1000 deep": UNDER_ORJSON,
    "nested 100 deep": OVER_OURS,
    "number past a double": b'{"update_id": 1e999999, "n": 1' + b"0" * 5000 + b"}",
    "huge integer": b'{"update_id": ' + b"9" * 4000 + b', "message": {"chat": {"id": 1}, "text": "a"}}',
    "invalid UTF-8": b'{"text": "\xff\xfe\xc3\x28", "phone": "\xa0\xa1", "token": "\xed\xa0\x80"}',
    "lone surrogate": b'{"text": "\\ud800", "login": "\\udfff"}',
    "NUL and control bytes": b'{"text": "a\\u0000b\\u0007\\u001b[31m", "note": "\\u0000", "reason": "\\u0085"}',
    "raw NUL bytes": b"\x00" * 4096,
    "duplicate keys": b'{"token": "a", "token": {"x": [1]}, "phone": "06", "phone": ["06"], "text": "a", "text": 1}',
    "string of 200 KB": b'{"text": "' + b"a" * 200_000 + b'", "note": "b"}',
    "string of 1 MB (over the body limit)": b'{"text": "' + b"a" * 1_000_000 + b'"}',
    "JSON scalar": b'"juste une chaine"',
    "JSON null": b"null",
    "JSON array": b"[1, 2, 3]",
    "NaN": b'{"n": NaN, "update_id": Infinity}',
    "truncated": b'{"text": "a',
}
# Routes that read a JSON body (``requestBody`` application/json): an unreadable body is a 400 with
# a reason, never taken.
UNREADABLE = ("deep array (200 KB)", "deep object", "nested 1000 deep", "nested 100 deep",
              "number past a double", "invalid UTF-8", "lone surrogate", "raw NUL bytes", "NaN", "truncated")  # fmt: skip


def operations() -> list[tuple[str, str, bool]]:
    """(method, path, reads JSON) for every operation of the spec."""
    out = []
    for path, ops in load_spec()["paths"].items():
        for method, op in ops.items():
            if method in ("get", "post", "put", "patch", "delete"):
                content = (op.get("requestBody") or {}).get("content") or {}
                out.append((method.upper(), path, "application/json" in content))
    return out


def fill(path: str, known: Known | None) -> str:
    """The path with real ids when signed in (the routes' checks pass), placeholders otherwise."""

    def value(m: re.Match[str]) -> str:
        if known is not None and known.path_values.get(m.group(1)):
            return known.path_values[m.group(1)][0]
        return "x"

    return re.sub(r"\{([^}]+)\}", value, path)


async def send_all(http: aiohttp.ClientSession, base: str, known: Known | None) -> tuple[Counter[int], list[str]]:
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    for method, template, reads_json in operations():
        if known is not None and template == "/console/logout":
            continue  # would end the session the rest of the run uses; sent in the anonymous run
        path = fill(template, known)
        for label, body in HOSTILE.items():
            for content_type in ("application/json", "application/x-www-form-urlencoded"):
                headers = {"Content-Type": content_type}
                if known is not None:
                    headers |= {"Origin": base, "X-CSRF-Token": known.csrf,
                                "X-Telegram-Bot-Api-Secret-Token": known.telegram_secret,
                                "Authorization": f"Bearer {known.api_key}"}  # fmt: skip
                    if template.startswith("/sms/twilio/"):  # signed over exactly these bytes
                        validator = RequestValidator(TWILIO_TOKEN)
                        headers["X-Twilio-Signature"] = validator.compute_signature(base + path, form_params(body))
                where = f"{method} {path} [{label}, {content_type}]"
                try:
                    async with http.request(method, base + path, data=body, headers=headers,
                                            allow_redirects=False) as resp:  # fmt: skip
                        text = await resp.text(errors="replace")
                except aiohttp.ClientError as exc:
                    failures.append(f"{where}: {type(exc).__name__}")
                    continue
                statuses[resp.status] += 1
                if resp.status >= 500:
                    failures.append(f"{where} -> {resp.status} {text[:200]!r}")
                elif reads_json and label in UNREADABLE and content_type == "application/json":
                    authorised = known is not None or template in ("/api/callbacks", "/webchat/session")
                    if authorised and template != "/webchat/session" and resp.status != 400:
                        # /webchat/session gives a new session for an unreadable body, as for none
                        failures.append(f"{where} -> {resp.status}, 400 expected {text[:200]!r}")
    return statuses, failures


async def test_hostile_bodies_signed_in_and_anonymous(
    product: tuple[Product, str], error_records: ErrorRecords, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway, base = product
    known = await seed(gateway, base)
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar, cookies={"mgw_session": known.cookie}) as http:
        signed, signed_failures = await send_all(http, base, known)
        # The issue's own case: a deep body on /api/callbacks says why, in French.
        async with http.post(
            f"{base}/api/callbacks", data=DEEP_ARRAY, headers={"Content-Type": "application/json"}
        ) as r:
            assert r.status == 400
            assert "imbriqué" in str(await r.json())
        async with http.post(f"{base}/console/api/campaigns", data=OVER_OURS,
                             headers={"Origin": base, "X-CSRF-Token": known.csrf}) as r:  # fmt: skip
            assert r.status == 400 and "imbriqué" in (await r.json())["detail"]
    async with aiohttp.ClientSession() as http:
        anonymous, anonymous_failures = await send_all(http, base, None)
    with capsys.disabled():
        print(f"\nhostile bodies: signed in {sorted(signed.items())}, anonymous {sorted(anonymous.items())}")
    assert not signed_failures, "\n".join(signed_failures[:30])
    assert not anonymous_failures, "\n".join(anonymous_failures[:30])
    assert not error_records.records, "\n".join(error_records.records[:20])
    # Nothing hostile was taken as a member's message with its control characters kept.
    redis = gateway.gateway.redis
    for shard in range(gateway.gateway.settings.stream_shards):
        for _, fields in await redis.xrange(keys.stream("in", shard)):
            text = Message.from_json(fields["m"]).text
            assert not any(ord(c) < 32 and c not in "\n\t" for c in text)


async def test_hostile_frames_on_the_web_chat_socket(product: tuple[Product, str], error_records: ErrorRecords) -> None:
    gateway, base = product
    _, token = issue_token(gateway.gateway.settings.secret_key)
    async with aiohttp.ClientSession(headers={"Origin": base}) as http:
        async with http.ws_connect(f"{base}/webchat/ws?token={token}") as ws:
            for label, body in HOSTILE.items():
                if len(body) > 60_000:
                    body = body[:60_000]  # the socket's frame limit is 64 KB
                await ws.send_str(body.decode("utf-8", errors="replace"))
                answer: Any = await ws.receive_json(timeout=10)
                assert answer["type"] == "error", (label, answer)
            # Still open and working after all of them: a real message is acknowledged.
            await ws.send_json({"type": "message", "client_id": "hostile-ok-1", "text": "bonjour\u0000 !"})
            answer = await ws.receive_json(timeout=10)
            while answer.get("type") != "ack":
                answer = await ws.receive_json(timeout=10)
    assert not error_records.records, "\n".join(error_records.records[:20])
