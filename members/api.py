"""The records API for back-office systems: ``/api/v1/records/…`` (described in gateway/openapi.yaml).

* ``GET|PUT|DELETE /api/v1/records/members/{number}``: a member (GET: with every record of theirs);
* ``GET|PUT|DELETE /api/v1/records/members/{number}/{kind}/{id}``: one claim, complaint, quote, card or
  membership file (``kind``: claims, complaints, quotes, cards, memberships);
* ``POST /api/v1/records/bulk``: NDJSON, one change a line (``{"kind", "version", "record"}``, with
  ``"delete": true`` to delete), thousands a request; the answer is NDJSON too, one result per line in
  the same order: a bad line is reported with its fields while the others are stored.

Every record carries the back office's ``version`` (an integer that grows with each change), or the
request says ``If-Match: "<version>"``: an older update never overwrites a newer one (409; 412 for
If-Match), and the same request twice changes nothing (``unchanged``). Validation is the import's
(``members/importer.py``), the write its write (``members/changes.py``); every write and every read
is in the audit trail (channel ``api``, agent ``api:<key name>``).

Authentication: ``Authorization: Bearer <key>`` (``run.py apikey create NAME --scope read|write``);
a missing, unknown or revoked key is refused 401 with a short French/English reason, a read key that
writes 403; each key has its own rate (``API_RATE_PER_S``, ``API_BURST``): 429 with Retry-After.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

import orjson
from aiohttp import web
from redis.asyncio import Redis

from gateway import keys
from gateway.envelope import BadRequest
from gateway.jsonbody import loads_object, read_object
from gateway.ratelimit import RateLimiter
from gateway.settings import Settings
from members.apikeys import ApiKey, ApiKeys
from members.audit import audit_many
from members.changes import KINDS, Change, Outcome, Record, RecordWriter
from members.importer import PARSERS_BY_KIND, RowErrors
from members.records import ALL_MEMBERS, MemberStore, field_names

RECORD_KINDS = tuple(k for k in KINDS if k != "members")
BATCH = 1000
_VERSION_MAX = 2**53  # what every JSON reader keeps exact
_ETAG = re.compile(r'^\s*(?:W/)?"?(\d{1,16})"?\s*$')

UNAUTHORIZED = {
    "missing": "Clé d'API manquante (Authorization: Bearer …). / API key missing.",
    "unknown": "Clé d'API inconnue. / Unknown API key.",
    "revoked": "Clé d'API révoquée. / API key revoked.",
}
READ_ONLY = "Cette clé ne permet que la lecture. / This key is read-only."
TOO_MANY = "Trop de requêtes pour cette clé ; réessayez plus tard. / Too many requests for this key."


def _json(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


def _cell(value: Any) -> str | None:
    """A JSON value as the import's cell text; None when it cannot be one (an object, a list)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "oui" if value else "non"
    if isinstance(value, int | float | str):
        return str(value)
    return None


def _version(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and 0 < value < _VERSION_MAX:
        return value
    return None


def validate(kind: str, body: dict[str, Any], *, member: str = "", rid: str = "") -> tuple[Record | None, dict[str, str]]:
    """The record a JSON object describes, with the import's checks; else the errors by field. ``member``
    and ``rid`` come from the URL (the body may repeat them, not contradict them)."""
    cls = KINDS[kind]
    names = field_names(cls)
    errors: dict[str, str] = {}
    row: dict[str, str] = {}
    for name, value in body.items():
        if name == "version":
            continue
        if name not in names:
            errors[str(name)[:60]] = "champ inconnu"
            continue
        cell = _cell(value)
        if cell is None:
            errors[name] = "valeur simple attendue (texte, nombre ou booléen)"
            continue
        row[name] = cell
    ident, owner = ("number", "number") if kind == "members" else ("id", "member")
    for name, expected in ((ident, rid), (owner, member)):
        if expected and row.get(name, expected).strip() != expected:
            errors[name] = f"ne correspond pas à l'adresse de la requête ({expected})"
        elif expected:
            row[name] = expected
    try:
        record = PARSERS_BY_KIND[kind](row)
    except RowErrors as exc:
        for err in exc.errors:
            errors.setdefault(err.column, str(err))
        return None, errors
    return (None, errors) if errors else (record, {})


class RecordsApi:
    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.settings = settings
        self.redis = redis
        self.keys = ApiKeys(redis)
        self.writer = RecordWriter(redis)
        self.store = MemberStore(redis)
        self.limiter = RateLimiter(redis)
        # Told of the changes stored (the composition root adds members.proactive: members told first).
        self.on_stored: list[Callable[[list[Change]], Awaitable[None]]] = []

    # Authentication, scope and rate ------------------------------------------------------------
    async def _caller(self, request: web.Request, scope: str) -> ApiKey | web.Response:
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        challenge = {"WWW-Authenticate": 'Bearer realm="records"'}
        if not token:
            return _json({"error": "unauthorized", "detail": UNAUTHORIZED["missing"]}, 401, challenge)
        key = await self.keys.find(token)
        if key is None:
            return _json({"error": "unauthorized", "detail": UNAUTHORIZED["unknown"]}, 401, challenge)
        if not key.active:
            return _json({"error": "unauthorized", "detail": UNAUTHORIZED["revoked"]}, 401, challenge)
        if not key.allows(scope):
            return _json({"error": "forbidden", "detail": READ_ONLY}, 403)
        s = self.settings
        wait = await self.limiter.acquire(f"api:{key.name}", s.api_rate_per_s, s.api_burst)
        if wait > 0:
            retry = max(1, math.ceil(wait))
            return _json({"error": "rate_limited", "detail": TOO_MANY, "retry_after_s": retry}, 429,
                         {"Retry-After": str(retry)})  # fmt: skip
        return key

    @staticmethod
    def _precondition(request: web.Request, body_version: Any) -> tuple[int | None, int | None, dict[str, str]]:
        """(version, expected version) from the body's ``version`` and ``If-Match``, or the errors."""
        version = expect = None
        errors: dict[str, str] = {}
        if body_version is not None:
            version = _version(body_version)
            if version is None:
                errors["version"] = "entier positif attendu"
        header = request.headers.get("If-Match")
        if header is not None:
            match = _ETAG.match(header)
            if match is None:
                errors["If-Match"] = 'version attendue entre guillemets, par exemple "3"'
            else:
                expect = int(match.group(1))
        if version is None and expect is None and not errors:
            errors["version"] = "version manquante : le champ version (entier croissant) ou l'en-tête If-Match"
        return version, expect, errors

    async def _members_known(self, numbers: set[str]) -> set[str]:
        ordered = sorted(numbers)
        if not ordered:
            return set()
        found = await self.redis.smismember(ALL_MEMBERS, ordered)
        return {n for n, ok in zip(ordered, found, strict=True) if ok}

    async def _write(self, changes: list[Change], key: ApiKey) -> list[Outcome]:
        outcomes = await self.writer.apply(changes)
        stored = [c for c, o in zip(changes, outcomes, strict=True) if o.status == "stored"]
        for hook in self.on_stored if stored else ():
            await hook(stored)
        await audit_many(self.redis, [
            (c.member, "", "api", f"record_{o.status}", [f"{c.kind}:{c.id}"], f"api:{key.name}")
            for c, o in zip(changes, outcomes, strict=True) if o.status in ("stored", "deleted")
        ])  # fmt: skip
        return outcomes

    @staticmethod
    def _answer(outcome: Outcome) -> web.Response:
        etag = {"ETag": f'"{outcome.version}"'}
        if outcome.status in ("stored", "unchanged", "deleted"):
            return _json({"status": outcome.status, "version": outcome.version}, 200, etag)
        if outcome.status == "not_found":
            return _json({"error": "not_found", "detail": "Fiche inconnue."}, 404)
        if outcome.status == "precondition_failed":
            return _json({"error": "precondition_failed", "current_version": outcome.version,
                          "detail": f"La fiche n'est plus à cette version (version actuelle : {outcome.version})."},
                         412, etag)  # fmt: skip
        return _json({"error": "conflict", "current_version": outcome.version,
                      "detail": f"Version refusée : la fiche est à la version {outcome.version}, "
                                "une mise à jour plus ancienne ne la remplace pas."}, 409, etag)  # fmt: skip

    # Routes -----------------------------------------------------------------------------------------
    def routes(self) -> web.RouteTableDef:
        r = web.RouteTableDef()
        kinds = "|".join(RECORD_KINDS)

        @r.get("/api/v1/records/members/{number}")
        async def get_member(request: web.Request) -> web.Response:
            key = await self._caller(request, "read")
            if isinstance(key, web.Response):
                return key
            number = request.match_info["number"]
            member = await self.store.get(number)
            if member is None:
                return _json({"error": "not_found", "detail": "Adhérent inconnu."}, 404)
            versions = await self.redis.hgetall(keys.member_versions(number))
            out: dict[str, Any] = {"member": asdict(member), "version": _stored_version(versions, f"members:{number}")}
            for kind in RECORD_KINDS:
                records = await self.store.records(number, KINDS[kind].RECORD)
                out[kind] = [{**rec, "version": _stored_version(versions, f"{kind}:{rec.get('id')}")} for rec in records]
            await audit_many(self.redis, [(number, "", "api", "records_read", ["members:" + number], f"api:{key.name}")])
            return _json(out)

        @r.get(f"/api/v1/records/members/{{number}}/{{kind:{kinds}}}/{{rid}}")
        async def get_record(request: web.Request) -> web.Response:
            key = await self._caller(request, "read")
            if isinstance(key, web.Response):
                return key
            number, kind, rid = (request.match_info[n] for n in ("number", "kind", "rid"))
            raw = await self.redis.hget(f"{keys.member(number)}:{KINDS[kind].RECORD}", rid)
            if raw is None:
                return _json({"error": "not_found", "detail": "Fiche inconnue."}, 404)
            version = _stored_version(await self.redis.hgetall(keys.member_versions(number)), f"{kind}:{rid}")
            await audit_many(self.redis, [(number, "", "api", "records_read", [f"{kind}:{rid}"], f"api:{key.name}")])
            return _json({**orjson.loads(raw), "version": version}, 200, {"ETag": f'"{version}"'})

        async def put(request: web.Request, kind: str, number: str, rid: str) -> web.Response:
            key = await self._caller(request, "write")
            if isinstance(key, web.Response):
                return key
            body = await read_object(request)
            version, expect, errors = self._precondition(request, body.get("version"))
            record, field_errors = validate(kind, body, member=number, rid=rid)
            errors.update(field_errors)
            if kind != "members" and "member" not in errors and not await self._members_known({number}):
                errors["member"] = f"adhérent inconnu {number!r}"
            if errors or record is None:
                return _json({"error": "invalid", "fields": errors}, 400)
            [outcome] = await self._write([Change(kind, number, rid, record, version, expect)], key)
            return self._answer(outcome)

        async def delete(request: web.Request, kind: str, number: str, rid: str) -> web.Response:
            key = await self._caller(request, "write")
            if isinstance(key, web.Response):
                return key
            version, expect, errors = self._precondition(request, request.query.get("version"))
            if errors:
                return _json({"error": "invalid", "fields": errors}, 400)
            [outcome] = await self._write([Change(kind, number, rid, None, version, expect)], key)
            return self._answer(outcome)

        @r.put("/api/v1/records/members/{number}")
        async def put_member(request: web.Request) -> web.Response:
            number = request.match_info["number"]
            return await put(request, "members", number, number)

        @r.delete("/api/v1/records/members/{number}")
        async def delete_member(request: web.Request) -> web.Response:
            number = request.match_info["number"]
            return await delete(request, "members", number, number)

        @r.put(f"/api/v1/records/members/{{number}}/{{kind:{kinds}}}/{{rid}}")
        async def put_record(request: web.Request) -> web.Response:
            m = request.match_info
            return await put(request, m["kind"], m["number"], m["rid"])

        @r.delete(f"/api/v1/records/members/{{number}}/{{kind:{kinds}}}/{{rid}}")
        async def delete_record(request: web.Request) -> web.Response:
            m = request.match_info
            return await delete(request, m["kind"], m["number"], m["rid"])

        @r.post("/api/v1/records/bulk")
        async def bulk(request: web.Request) -> web.StreamResponse:
            key = await self._caller(request, "write")
            if isinstance(key, web.Response):
                return key
            lines = await self._read_lines(request)
            if isinstance(lines, web.Response):
                return lines
            results: list[dict[str, Any]] = []
            created: set[str] = set()  # members upserted earlier in this request
            for start in range(0, len(lines), BATCH):
                results += await self._bulk_batch(lines[start : start + BATCH], start, created, key)
            counts: dict[str, int] = {}
            for res in results:
                counts[res["status"]] = counts.get(res["status"], 0) + 1
            body = b"".join(orjson.dumps(res) + b"\n" for res in results)
            headers = {f"X-Records-{status.replace('_', '-').title()}": str(n) for status, n in sorted(counts.items())}
            return web.Response(body=body, content_type="application/x-ndjson", headers=headers)

        return r

    async def _read_lines(self, request: web.Request) -> list[bytes] | web.Response:
        """The request's lines, bounded by API_BULK_MAX_BYTES and API_BULK_MAX_LINES (413 beyond)."""
        limit = self.settings.api_bulk_max_bytes
        too_big = _json({"error": "too_large", "detail": f"Corps de plus de {limit} octets ; envoyez-le en "
                         "plusieurs requêtes. / Body too large."}, 413)  # fmt: skip
        if (request.content_length or 0) > limit:
            return too_big
        chunks: list[bytes] = []
        size = 0
        while chunk := await request.content.read(1 << 16):
            size += len(chunk)
            if size > limit:
                return too_big
            chunks.append(chunk)
        lines = b"".join(chunks).split(b"\n")
        while lines and not lines[-1].strip():
            lines.pop()
        if len(lines) > self.settings.api_bulk_max_lines:
            return _json({"error": "too_large", "detail": f"Plus de {self.settings.api_bulk_max_lines} lignes ; "
                          "envoyez-les en plusieurs requêtes. / Too many lines."}, 413)  # fmt: skip
        return lines

    async def _bulk_batch(self, lines: list[bytes], offset: int, created: set[str], key: ApiKey) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = [{} for _ in lines]
        pending: list[tuple[int, Change]] = []
        for i, raw in enumerate(lines):
            res = results[i]
            res["line"] = offset + i + 1
            if not raw.strip():
                res.update(status="invalid", errors={"ligne": "ligne vide"})
                continue
            change, errors = _bulk_change(raw)
            if change is None:
                res.update(status="invalid", errors=errors)
                continue
            res.update(kind=change.kind, id=change.id)
            pending.append((i, change))
            if change.kind == "members" and change.record is not None:
                created.add(change.member)
        known = await self._members_known({c.member for _, c in pending if c.kind != "members"} - created)
        ready: list[tuple[int, Change]] = []
        for i, change in pending:
            if change.kind != "members" and change.record is not None and change.member not in known | created:
                results[i].update(status="invalid", errors={"member": f"adhérent inconnu {change.member!r}"})
            else:
                ready.append((i, change))
        outcomes = await self._write([c for _, c in ready], key)
        for (i, _), outcome in zip(ready, outcomes, strict=True):
            results[i].update(status=outcome.status, version=outcome.version)
            if outcome.status in ("conflict", "precondition_failed"):
                results[i]["current_version"] = outcome.version
        return results


def _bulk_change(raw: bytes) -> tuple[Change | None, dict[str, str]]:
    """One NDJSON line as a change, or its errors by field."""
    try:
        line = loads_object(raw)
    except BadRequest as exc:
        return None, {"ligne": str(exc)}
    kind = line.get("kind")
    if kind not in KINDS:
        return None, {"kind": f"type de fiche attendu : {', '.join(KINDS)}"}
    record_body = line.get("record")
    if not isinstance(record_body, dict):
        return None, {"record": "objet attendu"}
    version = _version(line.get("version", record_body.get("version")))
    if version is None:
        return None, {"version": "version manquante ou invalide (entier positif)"}
    ident = "number" if kind == "members" else "id"
    if line.get("delete") is True:
        rid = str(record_body.get(ident) or "")
        member = rid if kind == "members" else str(record_body.get("member") or "")
        missing = {f: "valeur manquante" for f, v in ((ident, rid), ("member", member)) if not v}
        if missing:
            return None, missing
        return Change(kind, member, rid, None, version), {}
    record, errors = validate(kind, record_body)
    if record is None:
        return None, errors
    member = record.number if kind == "members" else record.member  # type: ignore[union-attr]
    rid = record.number if kind == "members" else record.id  # type: ignore[union-attr]
    return Change(kind, member, rid, record, version), {}


def _stored_version(versions: dict[str, str], field: str) -> int:
    raw = versions.get(field, "")
    head = raw.split(" ", 1)[0]
    return int(head) if head.isdigit() else 0
