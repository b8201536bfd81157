"""The web-chat channel with only its own routes on real Redis: sessions, origin checks,
acknowledged and de-duplicated messages, durable resumable delivery, receipts, pages."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import WSMsgType, WSServerHandshakeError
from aiohttp.test_utils import TestClient

from channels.webchat import issue_token
from gateway import keys
from gateway.envelope import Message, PermanentFailure, StatusUpdate
from tests.channels.webchat.conftest import Harness, frames_until

Chat = tuple[Harness, TestClient]  # type: ignore[type-arg]
PARTNER = "https://www.mutuelle-exemple.fr"


def own_origin(client: TestClient) -> str:  # type: ignore[type-arg]
    return f"http://127.0.0.1:{client.port}"


async def new_session(client: TestClient) -> tuple[str, str]:  # type: ignore[type-arg]
    resp = await client.post("/webchat/session", headers={"Origin": own_origin(client)})
    assert resp.status == 200
    token = (await resp.json())["token"]
    return token, token.split(".")[0]


async def connect(client: TestClient, token: str, after: str | None = None) -> Any:  # type: ignore[type-arg]
    query = f"token={token}" + (f"&after={after}" if after else "")
    return await client.ws_connect(f"/webchat/ws?{query}", headers={"Origin": own_origin(client)})


def has(kind: str, n: int = 1) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda frames: sum(f.get("type") == kind for f in frames) >= n


async def outbox(harness: Harness, session_id: str) -> list[dict[str, str]]:
    return [f for _, f in await harness.redis.xrange(keys.webchat_outbox(session_id))]


# Sessions -----------------------------------------------------------------------------------------
async def test_session_tokens_only_for_allowed_origins(chat: Chat) -> None:
    _, client = chat
    assert (await client.post("/webchat/session")).status == 403
    assert (await client.post("/webchat/session", headers={"Origin": "https://evil.example"})).status == 403
    partner = await client.post("/webchat/session", headers={"Origin": PARTNER})
    assert partner.status == 200
    assert partner.headers["Access-Control-Allow-Origin"] == PARTNER
    assert partner.headers["Cache-Control"] == "no-store"


async def test_a_kept_genuine_token_is_given_back_a_forged_one_replaced(chat: Chat) -> None:
    _, client = chat
    token, _ = await new_session(client)
    origin = {"Origin": own_origin(client)}
    again = await (await client.post("/webchat/session", data=json.dumps({"token": token}), headers=origin)).json()
    assert again == {"token": token, "resumed": True}
    forged = token[:-2] + "xx"
    other = await (await client.post("/webchat/session", data=json.dumps({"token": forged}), headers=origin)).json()
    assert other["resumed"] is False and other["token"] not in (token, forged)
    for junk in (b"{", b"[]", b'{"token": 5}', b"x" * 5000):
        resp = await client.post("/webchat/session", data=junk, headers=origin)
        assert resp.status == 200 and (await resp.json())["resumed"] is False


# Socket handshake -------------------------------------------------------------------------------
async def test_foreign_or_missing_origin_and_bad_tokens_are_refused_before_upgrade(chat: Chat) -> None:
    _, client = chat
    token, _ = await new_session(client)
    _, other_secret = issue_token("not-our-secret")
    attempts = [
        (token, {"Origin": "https://evil.example"}),
        (token, {}),
        (token, {"Origin": own_origin(client) + ".evil.example"}),
        ("forged.token", {"Origin": own_origin(client)}),
        (other_secret, {"Origin": own_origin(client)}),
        ("", {"Origin": own_origin(client)}),
    ]
    for tok, headers in attempts:
        with pytest.raises(WSServerHandshakeError) as exc:
            await client.ws_connect(f"/webchat/ws?token={tok}", headers=headers)
        assert exc.value.status == 403
    ws = await client.ws_connect(f"/webchat/ws?token={token}", headers={"Origin": PARTNER})
    await ws.close()


# Member -> gateway --------------------------------------------------------------------------------
async def test_a_message_is_acknowledged_and_stored_once_even_when_resent(chat: Chat) -> None:
    harness, client = chat
    token, session_id = await new_session(client)
    ws = await connect(client, token)
    frame = {"type": "message", "client_id": "6f1d2c1e-0000-4000-8000-000000000001", "text": "  Bonjour <b>!</b> "}
    await ws.send_json(frame)
    first = await frames_until(ws, lambda fs: has("ack")(fs) and has("echo")(fs))
    await ws.send_json(frame)  # resent after a flaky network: same client id
    [ack2] = await frames_until(ws, has("ack"))
    ack1 = next(f for f in first if f["type"] == "ack")
    assert ack1 == ack2 == {"type": "ack", "client_id": frame["client_id"], "msg_id": ack1["msg_id"]}

    [stored] = await harness.inbound()
    assert (stored.channel, stored.urn, stored.text, stored.external_id, stored.id) == (
        "webchat",
        f"webchat:{session_id}",
        "Bonjour <b>!</b>",
        frame["client_id"],
        ack1["msg_id"],
    )
    # A reply sent now comes right after the one echo: the resend echoed nothing more.
    await harness.reply(session_id, "Bien reçu", "r1")
    rest = await frames_until(ws, has("message"))
    assert [f["type"] for f in rest] == ["message"]
    assert [e["type"] for e in await outbox(harness, session_id)] == ["echo", "message"]
    await ws.close()


async def test_bad_frames_get_french_errors_and_the_socket_keeps_working(chat: Chat) -> None:
    harness, client = chat
    token, _ = await new_session(client)
    ws = await connect(client, token)
    cases = [
        ("{not json", "bad_json", None),
        ('["x"]', "bad_frame", None),
        ('{"type":"typing"}', "bad_frame", None),
        ('{"type":"message","client_id":"short","text":"x"}', "bad_client_id", None),
        ('{"type":"message","client_id":12345678,"text":"x"}', "bad_client_id", None),
        ('{"type":"message","client_id":"client-000002","text":"   "}', "empty", "client-000002"),
        ('{"type":"message","client_id":"client-000003","text":null}', "empty", "client-000003"),
        ('{"type":"message","client_id":"client-000004","text":"' + "é" * 4001 + '"}', "too_long", "client-000004"),
    ]
    for raw, code, client_id in cases:
        await ws.send_str(raw)
        error = await ws.receive_json()
        assert (error["type"], error["code"], error["client_id"]) == ("error", code, client_id)
        assert error["message"] and error["message"].isascii() is False or "." in error["message"]
    await ws.send_bytes(b"\x00\x01")  # ignored
    await ws.send_json({"type": "message", "client_id": "client-000005", "text": "é" * 4000})
    [ack] = await frames_until(ws, has("ack"))
    assert ack["client_id"] == "client-000005"
    assert [m.external_id for m in await harness.inbound()] == ["client-000005"]
    await ws.close()


async def test_an_oversized_frame_closes_the_socket(chat: Chat) -> None:
    _, client = chat
    token, _ = await new_session(client)
    ws = await connect(client, token)
    await ws.send_str("x" * (70 * 1024))
    closing = await ws.receive()
    assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING, WSMsgType.ERROR)
    assert ws.close_code == 1009


async def test_storage_failures_close_the_socket_and_the_resend_is_stored_once(chat: Chat) -> None:
    harness, client = chat
    token, session_id = await new_session(client)
    frame = {"type": "message", "client_id": "client-lost-0001", "text": "Ma carte de tiers payant"}

    # Storage down: nothing stored, the widget is told and the socket closed so it resends later.
    harness.faults = ["before"]
    ws = await connect(client, token)
    await ws.send_json(frame)
    error = await ws.receive_json()
    assert (error["code"], error["client_id"]) == ("unavailable", None)
    assert (await ws.receive()).type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
    assert ws.close_code == 1013
    assert await harness.inbound() == []

    # Stored, but the answer is lost: the resend is recognised.
    harness.faults = ["after"]
    ws = await connect(client, token)
    await ws.send_json(frame)
    assert (await ws.receive_json())["code"] == "unavailable"
    ws = await connect(client, token)
    await ws.send_json(frame)
    frames = await frames_until(ws, lambda fs: has("ack")(fs) and has("echo")(fs))
    [stored] = await harness.inbound()
    assert stored.external_id == frame["client_id"]
    assert [f for f in frames if f["type"] == "echo"][0]["msg_id"] == stored.id
    assert [e["type"] for e in await outbox(harness, session_id)] == ["echo"]
    await ws.close()


# Gateway -> member -----------------------------------------------------------------------------------
async def test_a_reply_sent_by_another_process_reaches_the_socket(
    chat: Chat, make_harness: Callable[..., Harness]
) -> None:
    _, client = chat
    token, session_id = await new_session(client)
    ws = await connect(client, token)
    worker = make_harness()  # another process: a dispatcher without sockets
    out = Message(id="m-hostile", channel="webchat", urn=f"webchat:{session_id}", direction="out", text="<img src=x>")
    result = await worker.channel.send(out)
    [frame] = await frames_until(ws, has("message"))
    assert (frame["text"], frame["msg_id"]) == ("<img src=x>", "m-hostile")
    assert result.status == "sent" and result.external_id == f"{session_id}/{frame['id']}"
    # The dispatcher may send again after a crash: still shown once.
    assert (await worker.channel.send(out)).external_id == result.external_id
    await worker.reply(session_id, "suite", "m-next")
    [nxt] = await frames_until(ws, has("message"))
    assert nxt["text"] == "suite"
    await ws.close()


async def test_send_refuses_an_address_that_is_not_a_web_chat_session(chat: Chat) -> None:
    harness, _ = chat
    for urn in ("tel:+33612345678", "webchat:"):
        with pytest.raises(PermanentFailure):
            await harness.channel.send(Message(id="x", channel="webchat", urn=urn, direction="out", text="x"))


async def test_reconnecting_after_the_last_entry_neither_loses_nor_repeats(chat: Chat) -> None:
    harness, client = chat
    token, session_id = await new_session(client)
    await harness.reply(session_id, "un", "r1")
    ws = await connect(client, token)
    [one] = await frames_until(ws, has("message"))
    await ws.close()
    for n, text in enumerate(["deux", "trois"], start=2):  # while the member is away
        await harness.reply(session_id, text, f"r{n}")
    ws = await connect(client, token, after=one["id"])
    got = await frames_until(ws, has("message", 2))
    await harness.reply(session_id, "quatre", "r4")
    got += await frames_until(ws, has("message"))
    assert [f["text"] for f in got] == ["deux", "trois", "quatre"]
    await ws.close()
    # A reload starts from the beginning: the whole conversation, in order, once.
    ws = await connect(client, token)
    everything = await frames_until(ws, has("message", 4))
    assert [f["text"] for f in everything] == ["un", "deux", "trois", "quatre"]
    assert len({f["id"] for f in everything}) == 4
    await ws.close()
    # A nonsense resume point is ignored rather than trusted.
    ws = await connect(client, token, after="not-an-id")
    assert [f["text"] for f in await frames_until(ws, has("message", 4))][0] == "un"
    await ws.close()


async def test_a_reply_shown_by_the_widget_is_delivered(chat: Chat) -> None:
    harness, client = chat
    token, session_id = await new_session(client)
    ws = await connect(client, token)
    await ws.send_json({"type": "message", "client_id": "client-seen-001", "text": "Bonjour"})
    echo = (await frames_until(ws, has("echo")))[-1]
    ext = await harness.reply(session_id, "Bonjour, que puis-je pour vous ?", "r1")
    reply = (await frames_until(ws, has("message")))[-1]
    # Receipts for an echo, an unknown or malformed id are ignored; frames are handled in order.
    for bad in (echo["id"], "1-0", "9999999999999-0", "abc", 5, None):
        await ws.send_json({"type": "seen", "id": bad})
    await ws.send_json({"type": "seen", "id": reply["id"]})
    assert await harness.wait_statuses(1) == [StatusUpdate("webchat", ext, "delivered")]
    await ws.close()


async def test_stop_closes_the_sockets_so_widgets_reconnect_elsewhere(chat: Chat) -> None:
    harness, client = chat
    token, _ = await new_session(client)
    ws = await connect(client, token)
    assert harness.channel.connected(token.split(".")[0]) == 1
    await harness.channel.stop()
    assert (await ws.receive()).type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
    assert ws.close_code == 1001


# Pages -------------------------------------------------------------------------------------------
async def test_demo_page_in_french_with_the_widget_and_a_strict_policy(chat: Chat) -> None:
    _, client = chat
    resp = await client.get("/")
    html = await resp.text()
    assert resp.status == 200 and resp.content_type == "text/html"
    assert '<html lang="fr">' in html and '<script src="/webchat/widget.js" defer></script>' in html
    for link in ('href="/callback"', 'href="/healthz"', 'href="/metrics"'):
        assert link in html
    assert "<script>" not in html and " style=" not in html and " on" + "click=" not in html
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe" not in csp and f"ws://127.0.0.1:{client.port}" in csp
    assert resp.headers["Cache-Control"] == "no-cache"


async def test_widget_files_are_cached_and_revalidated(chat: Chat) -> None:
    _, client = chat
    for path, ctype in (("/webchat/widget.js", "application/javascript"), ("/webchat/widget.css", "text/css")):
        resp = await client.get(path)
        assert resp.status == 200 and resp.content_type == ctype
        assert "max-age=" in resp.headers["Cache-Control"] and resp.headers["X-Content-Type-Options"] == "nosniff"
        again = await client.get(path, headers={"If-None-Match": resp.headers["ETag"]})
        assert again.status == 304 and await again.read() == b""


async def test_widget_source_never_builds_markup_from_text(chat: Chat) -> None:
    _, client = chat
    js = await (await client.get("/webchat/widget.js")).text()
    for forbidden in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function(", ".style"):
        assert forbidden not in js
    for french in ("Bonjour ! Comment pouvons-nous vous aider ?", "Écrivez votre message…", "Envoyer", "Reconnexion…"):
        assert french in js
