"""Web-chat tokens and WebSocket through the real gateway app (real Redis, in-process)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import WSCloseCode, WSMsgType, WSServerHandshakeError
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from channels.webchat import channel as webchat_channel
from channels.webchat import issue_token, verify_token
from gateway import keys
from gateway.app import GATEWAY, Gateway
from gateway.envelope import Message
from gateway.responders import ACK_TEXT
from gateway.settings import Settings

ORIGIN = "http://127.0.0.1:8080"


def test_tokens_are_signed_and_checked() -> None:
    session_id, token = issue_token("k1")
    assert verify_token("k1", token) == session_id
    assert verify_token("k2", token) is None
    assert verify_token("k1", token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert verify_token("k1", f"other.{token.split('.')[1]}") is None
    for junk in ("", ".", "x" * 500, "abc"):
        assert verify_token("k1", junk) is None


@pytest.fixture
async def client(redis: Redis, settings: Settings) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    gateway = Gateway(settings, redis, channel_names=["webchat"])
    c: TestClient = TestClient(TestServer(gateway.build_app(), host="127.0.0.1"))  # type: ignore[type-arg]
    await c.start_server()
    yield c
    await c.close()


async def frames_until(ws: Any, pred: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while not pred(got):
            got.append(await ws.receive_json())
    return got


async def test_foreign_origin_and_bad_token_are_refused(client: TestClient) -> None:  # type: ignore[type-arg]
    _, token = issue_token("test-secret-key")
    with pytest.raises(WSServerHandshakeError) as exc:
        await client.ws_connect(f"/webchat/ws?token={token}", headers={"Origin": "https://evil.example"})
    assert exc.value.status == 403
    with pytest.raises(WSServerHandshakeError) as exc:
        await client.ws_connect("/webchat/ws?token=forged.token", headers={"Origin": ORIGIN})
    assert exc.value.status == 403
    resp = await client.post("/webchat/session", headers={"Origin": "https://evil.example"})
    assert resp.status == 403


async def test_message_acked_once_answered_and_resumed_without_repeats(
    client: TestClient,  # type: ignore[type-arg]
    redis: Redis,
) -> None:
    resp = await client.post("/webchat/session", headers={"Origin": ORIGIN})
    token = (await resp.json())["token"]
    session_id = token.split(".")[0]
    ws = await client.ws_connect(f"/webchat/ws?token={token}", headers={"Origin": ORIGIN})
    frame = {"type": "message", "client_id": "client-000001", "text": "Bonjour <b>test</b>"}
    await ws.send_json(frame)
    await ws.send_json(frame)  # resent after a flaky network: same client id
    got = await frames_until(ws, lambda fs: any(f.get("type") == "message" for f in fs))
    acks = [f for f in got if f["type"] == "ack"]
    assert len(acks) == 2 and acks[0]["msg_id"] == acks[1]["msg_id"]
    echoes = [f for f in got if f["type"] == "echo"]
    reply = next(f for f in got if f["type"] == "message")
    assert [e["text"] for e in echoes] == ["Bonjour <b>test</b>"]
    assert reply["text"] == ACK_TEXT
    assert await redis.xlen(keys.stream("in", 0)) == 1
    await ws.close()

    # Reconnect after the last entry seen: only what came since.
    assert client.server.app is not None
    channel = client.server.app[GATEWAY].channels["webchat"]
    await channel.send(
        Message(id="later", channel="webchat", urn=f"webchat:{session_id}", direction="out", text="Suite")
    )
    ws2 = await client.ws_connect(f"/webchat/ws?token={token}&after={reply['id']}", headers={"Origin": ORIGIN})
    [later] = await frames_until(ws2, lambda fs: len(fs) >= 1)
    assert later["text"] == "Suite"
    # From the start: the whole conversation, in order, each entry once.
    ws3 = await client.ws_connect(f"/webchat/ws?token={token}", headers={"Origin": ORIGIN})
    everything = await frames_until(ws3, lambda fs: len(fs) >= 3)
    assert [f["type"] for f in everything] == ["echo", "message", "message"]
    await ws2.close()
    await ws3.close()


async def test_bad_frames_get_french_errors_not_a_crash(client: TestClient) -> None:  # type: ignore[type-arg]
    _, token = issue_token("test-secret-key")
    ws = await client.ws_connect(f"/webchat/ws?token={token}", headers={"Origin": ORIGIN})
    for bad in (
        "{not json",
        '["x"]',
        '{"type":"message","client_id":"short","text":"x"}',
        '{"type":"message","client_id":"client-000002","text":"   "}',
        '{"type":"message","client_id":"client-000003","text":"' + "x" * 5000 + '"}',
    ):
        await ws.send_str(bad)
        frame = await ws.receive_json()
        assert frame["type"] == "error" and frame["message"]
    await ws.close()


async def test_the_same_client_id_in_two_sessions_is_two_messages(
    client: TestClient,  # type: ignore[type-arg]
    redis: Redis,
) -> None:
    """A client id is unique within its session only: another member using the same one loses nothing."""
    for text in ("Bonjour, ici Camille", "Bonjour, ici Louis"):
        token = (await (await client.post("/webchat/session", headers={"Origin": ORIGIN})).json())["token"]
        ws = await client.ws_connect(f"/webchat/ws?token={token}", headers={"Origin": ORIGIN})
        await ws.send_json({"type": "message", "client_id": "client-000001", "text": text})
        got = await frames_until(ws, lambda fs: any(f.get("type") == "echo" for f in fs))
        assert [f["text"] for f in got if f["type"] == "echo"] == [text]
        await ws.close()
    assert await redis.xlen(keys.stream("in", 0)) == 2


async def test_a_retried_send_is_shown_once(client: TestClient, redis: Redis) -> None:  # type: ignore[type-arg]
    """The dispatcher may send a message again after a crash: the member sees it once."""
    token = (await (await client.post("/webchat/session", headers={"Origin": ORIGIN})).json())["token"]
    session_id = token.split(".")[0]
    assert client.server.app is not None
    channel = client.server.app[GATEWAY].channels["webchat"]
    reply = Message(id="r-42", channel="webchat", urn=f"webchat:{session_id}", direction="out", text="Réponse")
    first = await channel.send(reply)
    again = await channel.send(reply)
    assert first.external_id == again.external_id
    assert await redis.xlen(keys.webchat_outbox(session_id)) == 1


async def test_a_saved_token_is_kept_while_valid_and_replaced_when_refused(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    """What the widget asks when its socket keeps closing before opening."""
    token = (await (await client.post("/webchat/session", headers={"Origin": ORIGIN})).json())["token"]
    kept = await client.post("/webchat/session", json={"token": token}, headers={"Origin": ORIGIN})
    assert (await kept.json())["token"] == token  # still good: the member keeps the conversation
    _, foreign = issue_token("another-secret-key")  # signed before a key change, say
    fresh = await (await client.post("/webchat/session", json={"token": foreign}, headers={"Origin": ORIGIN})).json()
    assert fresh["token"] != foreign and verify_token("test-secret-key", fresh["token"]) is not None
    junk = await client.post("/webchat/session", data=b"{not json", headers={"Origin": ORIGIN})
    assert junk.status == 200 and verify_token("test-secret-key", (await junk.json())["token"]) is not None


async def _open(client: TestClient, **kwargs: Any) -> tuple[str, Any]:  # type: ignore[type-arg]
    resp = await client.post("/webchat/session", headers={"Origin": ORIGIN})
    token = (await resp.json())["token"]
    ws = await client.ws_connect(f"/webchat/ws?token={token}&mark=1", headers={"Origin": ORIGIN}, **kwargs)
    await frames_until(ws, lambda fs: any(f.get("type") == "caught_up" for f in fs))
    return token.split(".")[0], ws


async def test_compression_offered_by_a_browser_is_declined(client: TestClient) -> None:  # type: ignore[type-arg]
    """A compressor would keep ~90 KiB per socket (10,000 sockets: 900 MiB) for frames of a few
    hundred bytes: the server answers without permessage-deflate."""
    _, ws = await _open(client, compress=15)
    assert ws.compress == 0
    await ws.close()


async def test_a_silent_socket_is_closed_by_the_heartbeat_and_a_live_one_kept(
    client: TestClient,  # type: ignore[type-arg]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 1 s: a pong slower than a period (a busy machine) would close the socket meant to stay.
    monkeypatch.setattr(webchat_channel, "HEARTBEAT_S", 1.0)
    assert client.server.app is not None
    channel = client.server.app[GATEWAY].channels["webchat"]
    await channel.stop()  # the heartbeat restarted with the short period
    await channel.start()
    _, live = await _open(client)
    live_frames: list[dict[str, Any]] = []

    async def read_live() -> None:  # a browser answers pings whatever the page does: so does this reader
        async for msg in live:
            if msg.type == WSMsgType.TEXT:
                live_frames.append(msg.json())

    reader = asyncio.create_task(read_live())
    _, silent = await _open(client, autoping=False)  # never answers
    async with asyncio.timeout(10):
        msg = await silent.receive()
        while msg.type == WSMsgType.PING:  # the pings it leaves unanswered, then the close
            msg = await silent.receive()
    assert msg.type == WSMsgType.CLOSE and msg.data == WSCloseCode.ABNORMAL_CLOSURE
    # The live one went through the same periods and still works.
    await live.send_json({"type": "message", "client_id": "client-live-01", "text": "Toujours là"})
    async with asyncio.timeout(10):
        while not any(f.get("type") == "message" for f in live_frames):
            await asyncio.sleep(0.02)
    assert not live.closed and next(f for f in live_frames if f["type"] == "message")["text"] == ACK_TEXT
    await live.close()
    await reader


async def test_replies_appended_while_the_subscription_was_lost_still_arrive(
    client: TestClient,  # type: ignore[type-arg]
    redis: Redis,
) -> None:
    session_id, ws = await _open(client)
    assert client.server.app is not None
    channel = client.server.app[GATEWAY].channels["webchat"]
    await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")  # Redis restarted, a proxy dropped it
    await channel.send(Message(id="lost-1", channel="webchat", urn=f"webchat:{session_id}", direction="out", text="Un"))
    [first] = await frames_until(ws, lambda fs: len(fs) >= 1)
    assert first["text"] == "Un"  # re-read once subscribed again
    await channel.send(
        Message(id="lost-2", channel="webchat", urn=f"webchat:{session_id}", direction="out", text="Deux")
    )
    [second] = await frames_until(ws, lambda fs: len(fs) >= 1)
    assert second["text"] == "Deux"  # and followed again by notification
    await ws.close()
